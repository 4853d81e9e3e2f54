"""`ftbench score-sql`: official file formats, refusal of misaligned or bad input, JSON lines, missing databases."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from benchmarks.cli import main as ftbench
from benchmarks.cli import score_sql

SEED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SEED_GOLD = SEED_DATA / "sql_create_context_spider_intersect" / "spider_create_context_gold-568.sql"


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    score_sql.add_arguments(parser)
    return score_sql.run(parser.parse_args([*argv, "--no-progress"]))


@pytest.fixture()
def spider_dir(tmp_path: Path) -> Path:
    """DIR/<db_id>/<db_id>.sqlite for one database, 'shop'; the gold also names 'gone', which has no file."""
    path = tmp_path / "database" / "shop" / "shop.sqlite"
    path.parent.mkdir(parents=True)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, price INTEGER)")
    connection.executemany("INSERT INTO item VALUES (?, ?, ?)", [(1, "pen", 2), (2, "ink", 7), (3, "pad", 4)])
    connection.commit()
    connection.close()
    return tmp_path / "database"


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


GOLD = ["SELECT name FROM item WHERE price > 3\tshop", "SELECT count(*) FROM item\tshop", "SELECT a FROM t\tgone"]


def read_output(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict], dict, str]:
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    return lines[:-1], lines[-1], captured.err


def test_rows_are_json_lines_and_missing_databases_are_left_out(tmp_path, spider_dir, capsys) -> None:
    gold = write(tmp_path / "gold.sql", GOLD)
    pred = write(tmp_path / "pred.txt", ["select name from item where 3 < price", "DROP TABLE item", "SELECT a FROM t"])
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir)) == 0
    rows, summary, err = read_output(capsys)
    assert [row["index"] for row in rows] == [0, 1, 2] and [row["db_id"] for row in rows] == ["shop", "shop", "gone"]
    assert rows[0]["execution"] == {"correct": True, "reason": None} and rows[0]["reason"] is None
    assert rows[1]["execution"]["correct"] is False and rows[1]["execution"]["reason"].startswith("denied")
    assert rows[2]["execution"] is None and rows[2]["execution_synth"] is None
    assert rows[2]["reason"].startswith("database missing: gone")
    assert summary["summary"] is True and summary["rows"] == 3
    execution = summary["metrics"]["execution"]
    assert (execution["correct"], execution["n"], execution["not_computed"]) == (1, 2, 1)
    assert 0 <= execution["ci95"][0] <= 0.5 <= execution["ci95"][1] <= 1
    assert summary["metrics"]["exact"]["n"] == 3
    assert "execution" in err  # the readable table


def test_table_json_gives_missing_databases_a_schema(tmp_path, spider_dir, capsys) -> None:
    tables = [{"db_id": "gone", "table_names_original": ["t"], "column_names_original": [[-1, "*"], [0, "a"]],
               "column_types": ["text", "number"], "primary_keys": [], "foreign_keys": []}]
    table_file = tmp_path / "tables.json"
    table_file.write_text(json.dumps(tables))
    gold = write(tmp_path / "gold.sql", GOLD)
    pred = write(tmp_path / "pred.txt", ["", "SELECT count(*) FROM item", "SELECT a FROM t"])
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir), "--table", str(table_file)) == 0
    rows, _, _ = read_output(capsys)
    assert rows[0]["exact"] == {"correct": False, "reason": "empty prediction"}
    assert rows[2]["execution"] is None and rows[2]["execution_synth"]["correct"] is True


def test_misaligned_files_exit_2_naming_both_counts(tmp_path, spider_dir, capsys) -> None:
    gold = write(tmp_path / "gold.sql", GOLD)
    pred = write(tmp_path / "pred.txt", ["SELECT 1", "SELECT 2"])
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir)) == 2
    err = capsys.readouterr().err
    assert "gold.sql has 3 lines" in err and "pred.txt has 2" in err


@pytest.mark.parametrize(("gold_lines", "message"), [
    (["SELECT 1 no tab here"], "line 1 is not 'SQL<TAB>db_id'"),
    (["SELECT 1\tshop", "\tshop"], "line 2 is not 'SQL<TAB>db_id'"),
])
def test_bad_gold_lines_exit_2_naming_the_line(tmp_path, spider_dir, capsys, gold_lines, message) -> None:
    gold = write(tmp_path / "gold.sql", gold_lines)
    pred = write(tmp_path / "pred.txt", ["SELECT 1"] * len(gold_lines))
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir)) == 2
    assert message in capsys.readouterr().err


def test_missing_and_non_utf8_files_exit_2(tmp_path, spider_dir, capsys) -> None:
    gold = write(tmp_path / "gold.sql", GOLD[:1])
    assert run_cli("--gold", str(tmp_path / "nope.sql"), "--pred", str(gold), "--db", str(spider_dir)) == 2
    assert "cannot read the gold file" in capsys.readouterr().err
    pred = tmp_path / "pred.txt"
    pred.write_bytes(b"SELECT \xff\n")
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir)) == 2
    assert "line 1 is not UTF-8" in capsys.readouterr().err
    assert run_cli("--gold", str(gold), "--pred", str(gold), "--db", str(tmp_path / "nodir")) == 2
    assert "database folder" in capsys.readouterr().err


def test_context_file_must_be_aligned(tmp_path, spider_dir, capsys) -> None:
    gold = write(tmp_path / "gold.sql", GOLD[:2])
    pred = write(tmp_path / "pred.txt", ["SELECT 1", "SELECT 2"])
    contexts = tmp_path / "val.json"
    contexts.write_text(json.dumps([{"context": "CREATE TABLE item (name VARCHAR)", "db_id": "shop"}]))
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir),
                   "--context-file", str(contexts)) == 2
    assert "has 1 rows but the gold file has 2" in capsys.readouterr().err


def test_gold_that_fails_is_an_error_not_a_wrong_answer_and_exits_1(tmp_path, spider_dir, capsys) -> None:
    gold = write(tmp_path / "gold.sql", ["SELECT missing_column FROM item\tshop", "SELECT count(*) FROM item\tshop"])
    pred = write(tmp_path / "pred.txt", ["SELECT name FROM item", "SELECT count(*) FROM item"])
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir)) == 1
    rows, summary, err = read_output(capsys)
    assert rows[0]["execution"]["correct"] is None
    assert rows[0]["execution"]["error"].startswith("gold query failed on") and "no such column" in rows[0]["execution"]["error"]
    assert rows[1]["execution"] == {"correct": True, "reason": None}  # the run went on
    execution = summary["metrics"]["execution"]
    assert (execution["correct"], execution["n"], execution["errors"], execution["not_computed"]) == (1, 1, 1, 0)
    assert execution["error_reasons"] == [rows[0]["execution"]["error"]]
    assert "errors: 1" in err and "error (execution): gold query failed" in err


@pytest.mark.parametrize("content", [b"not a database at all\n" * 50, "truncated"])
def test_unreadable_database_is_an_error_and_the_run_goes_on(tmp_path, spider_dir, capsys, content) -> None:
    broken = spider_dir / "broken" / "broken.sqlite"
    broken.parent.mkdir()
    data = (spider_dir / "shop" / "shop.sqlite").read_bytes()
    broken.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    gold = write(tmp_path / "gold.sql", ["SELECT count(*) FROM item\tbroken", "SELECT count(*) FROM item\tshop"])
    pred = write(tmp_path / "pred.txt", ["SELECT count(*) FROM item", "SELECT count(*) FROM item"])
    assert run_cli("--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir)) == 1
    rows, summary, _ = read_output(capsys)
    assert rows[0]["execution"]["error"].startswith(f"database unreadable: {broken}")
    assert rows[0]["exact"] == {"correct": True, "reason": None}  # metrics that need no database still count
    assert rows[1]["execution"] == {"correct": True, "reason": None}
    assert summary["metrics"]["execution"]["errors"] == 1 and summary["metrics"]["execution"]["n"] == 1


@pytest.mark.skipif(not SEED_GOLD.is_file(), reason="the seed's data (../shared/data) is not available")
def test_seed_gold_against_itself_is_perfect(tmp_path, capsys) -> None:
    pred = write(tmp_path / "pred.txt", [line.split("\t")[0] for line in SEED_GOLD.read_text().splitlines()])
    context = SEED_DATA / "sql_create_context_spider_intersect" / "spider_create_context_val.json"
    assert run_cli("--gold", str(SEED_GOLD), "--pred", str(pred), "--db", str(SEED_DATA / "spider" / "database"),
                   "--context-file", str(context)) == 0
    _, summary, _ = read_output(capsys)
    for name, figures in summary["metrics"].items():
        assert figures["correct"] == figures["n"] > 500, (name, figures)
    assert summary["metrics"]["execution"]["n"] == 536


def test_a_bom_is_not_part_of_the_first_gold_line(tmp_path, spider_dir, capsys) -> None:
    gold, pred = tmp_path / "gold.sql", tmp_path / "pred.txt"
    gold.write_bytes("\ufeffSELECT count(*) FROM singer\tconcert_singer\r\n".encode())
    pred.write_bytes("\ufeffSELECT count(*) FROM singer\r\n".encode())
    assert ftbench(["score-sql", "--gold", str(gold), "--pred", str(pred), "--db", str(spider_dir), "--no-progress"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"summary"' not in line]
    assert row["exact"]["correct"] is True
