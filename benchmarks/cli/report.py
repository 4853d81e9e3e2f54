"""`ftbench report RUN.json [RUN2.json ...] [--out DIR]`: the comparison as Markdown and two PNG figures.

Writes report.md, accuracy_vs_cost.png and cost_breakdown.png into DIR (see `benchmarks/report.py`) and prints the
Markdown to stdout; `--no-plots` writes the Markdown alone (no matplotlib needed).

Exit codes: 0 written; 2 unusable input (see `ftbench diff`: unreadable, not JSON, too deeply nested, a malformed
record), an output path equal to an input, or no matplotlib. No report file is written on exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.report import BARS_NAME, DEFAULT_MONTHS, REPORT_NAME, SCATTER_NAME, write_report
from models.errors import FtbenchError

EXIT_OK, EXIT_UNUSABLE = 0, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ftbench report RUN.json [...]`."""
    parser.add_argument("runs", metavar="RUN", nargs="+", type=Path, help="pytest-benchmark JSON of a run")
    parser.add_argument("--out", type=Path, default=Path("ftbench-report"), metavar="DIR",
                        help="folder for report.md and the PNG figures (default: %(default)s)")
    parser.add_argument("--no-plots", action="store_true", help="write the Markdown only (no matplotlib needed)")
    parser.add_argument("--volume", type=float, action="append", default=[], metavar="N",
                        help="requests per month to pick a candidate at (repeat for several); adds the decision "
                             "section")
    parser.add_argument("--months", type=float, default=DEFAULT_MONTHS, metavar="M",
                        help="months over which training cost is spread in the decision section (default: %(default)g)")


def run(args: argparse.Namespace) -> int:
    """Run `ftbench report`; returns 0 when written, 2 on unusable input or a missing matplotlib."""
    try:
        markdown = write_report(args.runs, args.out, plots=not args.no_plots, volumes=args.volume, months=args.months)
    except (FtbenchError, OSError) as error:
        print(f"ftbench report: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    sys.stdout.write(markdown)
    print(f"\nwrote {args.out / REPORT_NAME}" + ("" if args.no_plots else f", {SCATTER_NAME}, {BARS_NAME}"),
          file=sys.stderr)
    return EXIT_OK
