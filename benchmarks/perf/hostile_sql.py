"""Predictions that try to exhaust sqlite's time, memory or parser, as `ftbench score-sql` input files.

    python -m benchmarks.perf.hostile_sql OUT_DIR
    ftbench score-sql --gold OUT_DIR/hostile_gold.sql --pred OUT_DIR/hostile_pred.txt \\
        --db ../shared/data/spider/database --timeout 2 --no-progress

Every row should get a wrong verdict with its reason, no row should take more than twice --timeout, peak RSS should
stay far under 1 GB (measure with /usr/bin/time -v), and no database file should change (compare sha256sum).
"""

from __future__ import annotations

import sys
from pathlib import Path

from models.files import write_atomic

SINGER = "SELECT count(*) FROM singer\tconcert_singer"
CITY = "SELECT count(*) FROM city\tworld_1"
NESTED_IN = "(SELECT singer_id FROM singer WHERE singer_id IN "


def rows() -> list[tuple[str, str]]:
    """(gold line, prediction) pairs: gold is a plain count on a Spider dev database."""
    return [
        (SINGER, "SELECT zeroblob(999999999) FROM singer"),
        (SINGER, "SELECT randomblob(999999999), randomblob(999999999) FROM singer"),
        (SINGER, "SELECT count(*) + 0*length(printf('%.*c',999999999,'x')) FROM singer"),
        (SINGER, "SELECT name FROM singer WHERE age IN " + "(" * 50 + "30" + ")" * 50),
        (SINGER, "SELECT name FROM singer WHERE singer_id IN " + NESTED_IN * 65 + "(1)" + ")" * 65),
        (SINGER, "SELECT name FROM singer WHERE singer_id IN " + NESTED_IN * 65),
        (CITY, "SELECT name FROM city WHERE " + "(" * 93),
        (CITY, "SELECT count(*) FROM city WHERE id IN (" + ",".join(map(str, range(330_000))) + ")"),
        (CITY, "SELECT count(*) FROM city a, city b, city c"),
        (CITY, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"),
        (CITY, "SELECT length(group_concat(a.name || b.name)) FROM city a, city b"),
        (CITY, "SELECT " + ", ".join(["zeroblob(999999)"] * 400) + " FROM city LIMIT 1"),
        (CITY, "SELECT name, randomblob(900000) FROM city"),
        (CITY, "SELECT trim(hex(zeroblob(400000)), hex(zeroblob(400000)) || 'x') FROM city"),
        (CITY, "SELECT json_patch('{}', '{}') FROM city"),
        (SINGER, "SELECT count(*) FROM singer WHERE age = " + "+".join(["1"] * 3000)),
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    pairs = rows()
    write_atomic(out / "hostile_gold.sql", "".join(g + "\n" for g, _ in pairs))
    write_atomic(out / "hostile_pred.txt", "".join(p + "\n" for _, p in pairs))
    print(f"wrote {len(pairs)} rows to {out}/hostile_gold.sql and {out}/hostile_pred.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
