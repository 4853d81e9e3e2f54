"""`ftbench diff OLD.json NEW.json`: compare two benchmark runs and gate on regressions.

Both files are pytest-benchmark JSON (written by `--benchmark-json`, `--benchmark-save` or `--benchmark-autosave`),
read and checked by `benchmarks/runs.py`; the pairs are compared and gated by `benchmarks/gate.py`, whose docstring
gives the rules. This module parses the options and shows the result: a table for a terminal, Markdown for a PR
comment, or JSON for tools.

Exit codes:
    0  no regression (flags, added and removed pairs are reported but do not fail)
    1  at least one regression, and no pair with errors
    2  unusable input: a file that cannot be read, is not JSON (or is nested too deeply to parse), is not
       pytest-benchmark JSON, holds no ftbench record or records of an unknown schema version, holds a malformed
       record (a section missing, a field of the wrong type, a NaN or infinite number, a value out of range: every
       one is named with its file, pair and field), holds one (task, model) twice; two runs with no pair in
       common; an --output equal to an input; a bad gating option. Nothing is written
    3  at least one pair cannot be judged: the new run has errors, or either run has n = 0 (rerun it when the
       cause is fixed); regressions of other pairs are listed too
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.gate import (
    EXIT_UNUSABLE, GateRules, PairDiff, RunDiff, change_text, diff_files, paired_text, points_text,
)
from benchmarks.runs import Run, refuse_overwriting_inputs
from benchmarks.units import percent, seconds, usd
from models.errors import ConfigError
from models.files import write_atomic

EXIT_CODES_HELP = """\
exit codes:
  0  no regression (flags, added and removed pairs are reported but do not fail)
  1  at least one regression under the gating rules, and no pair with errors
  2  unusable input: unreadable, not JSON, not pytest-benchmark JSON, no ftbench record, an unknown record
     schema version, a malformed record (missing section, wrong type, NaN/Infinity, out of range: each named by
     file, pair and field), a (task, model) recorded twice, no pair in common, or --output equal to an input;
     nothing is written
  3  a pair cannot be judged: the new run has errors (failed requests or scorers), or either run has n = 0
     (no item evaluated or scored); fix the cause and rerun
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ftbench diff OLD NEW`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the epilog's exit-code table as written
    parser.epilog = EXIT_CODES_HELP
    parser.add_argument("old", metavar="OLD", type=Path, help="baseline run: pytest-benchmark JSON")
    parser.add_argument("new", metavar="NEW", type=Path, help="run to check: pytest-benchmark JSON")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                        help="table for a terminal, markdown for a PR comment, json for tools (default: %(default)s)")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE",
                        help="write the diff here instead of stdout; never one of the input files")
    rules = parser.add_argument_group("gating rules")
    rules.add_argument("--alpha", type=float, default=GateRules.alpha,
                       help="significance level of the exact McNemar test on shared items (default: %(default)s)")
    rules.add_argument("--min-drop", type=float, default=GateRules.min_drop, metavar="POINTS",
                       help="an accuracy drop must also exceed this many percentage points (default: %(default)s)")
    rules.add_argument("--max-latency-increase", type=float, default=GateRules.max_latency_increase, metavar="PERCENT",
                       help="largest allowed rise of latency p50, in percent (default: %(default)s)")
    rules.add_argument("--max-cost-increase", type=float, default=GateRules.max_cost_increase, metavar="PERCENT",
                       help="largest allowed rise of eval cost per 1K requests and of train cost, in percent "
                            "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Run `ftbench diff`; returns the exit code (0 no regression, 1 regression, 2 unusable input, 3 errors)."""
    try:
        rules = GateRules(
            alpha=args.alpha,
            min_drop=args.min_drop,
            max_latency_increase=args.max_latency_increase,
            max_cost_increase=args.max_cost_increase,
        )
        if args.output is not None:
            refuse_overwriting_inputs([args.output], [args.old, args.new])
        result = diff_files(args.old, args.new, rules)
        text = render(result, args.format)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_atomic(args.output, text)
    except (ConfigError, OSError) as error:
        print(f"ftbench diff: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    return result.exit_code


# ------------------------------------------------------------------------------------------------ formatting


TABLE_HEADER = ("task", "model", "metric", "accuracy", "change", "paired (lost/gained, p)",
                "latency p50", "latency p95", "eval $/1K req", "train $", "errors", "status")


def _cells(pair: PairDiff, arrow: str) -> tuple[str, ...]:
    head = pair.headline
    return (
        pair.task, pair.model, pair.metric,
        change_text(head.value, percent, arrow, relative=False), points_text(head), paired_text(head.paired),
        change_text(pair.latency_p50, seconds, arrow), change_text(pair.latency_p95, seconds, arrow),
        change_text(pair.cost_per_1k, usd, arrow), change_text(pair.cost_train, usd, arrow),
        change_text(pair.error_rate, percent, arrow, relative=False),
        pair.status.upper() if pair.regressions or pair.errors else pair.status,
    )


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_table(result: RunDiff) -> str:
    """The terminal form: a row per pair, a table of every metric, then regressions, flags, added, removed."""
    lines = [f"ftbench diff: {result.verdict}", f"  old: {_run_label(result.old)}",
             f"  new: {_run_label(result.new)}", ""]
    lines += _aligned([TABLE_HEADER, *(_cells(p, "->") for p in result.pairs)])
    metric_rows = [
        (p.task, p.model, m.name, change_text(m.value, percent, relative=False), points_text(m), paired_text(m.paired))
        for p in result.pairs for m in p.metrics
    ]
    metric_header = ("task", "model", "metric", "accuracy", "change", "paired (lost/gained, p)")
    lines += ["", *_aligned([metric_header, *metric_rows])]
    lines += _lists(result, bullet="  - ")
    return "\n".join(lines) + "\n"


def format_markdown(result: RunDiff) -> str:
    """For a PR comment: a verdict header, one table, then lists of regressions and flags."""
    icon = "⚠️" if result.errors else "❌" if result.regressions else "✅"
    rules = result.rules
    lines = [
        f"### {icon} ftbench diff: {result.verdict}",
        "",
        f"Old `{_run_label(result.old)}` → new `{_run_label(result.new)}`. "
        f"Gate: accuracy drop > {rules.min_drop} pts "
        f"at p < {rules.alpha} (exact McNemar on shared items), latency p50 > +{rules.max_latency_increase}%, "
        f"cost > +{rules.max_cost_increase}%; a pair with failed items or n = 0 is not judged (ERRORS).",
        "",
        "| " + " | ".join((*TABLE_HEADER, "other metrics")) + " |",
        "|" + "---|" * (len(TABLE_HEADER) + 1),
    ]
    for pair in result.pairs:
        others = "<br>".join(
            f"{m.name} {change_text(m.value, percent, '→', relative=False)} ({points_text(m)}, {paired_text(m.paired)})"
            for m in pair.metrics[1:]
        )
        cells = (*_cells(pair, "→"), others or "–")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += _lists(result, bullet="- ", heading="**{}**")
    return "\n".join(lines) + "\n"


def _lists(result: RunDiff, bullet: str, heading: str = "{}") -> list[str]:
    lines = []
    for title, entries in (
        ("Errors (not judged: rerun when the cause is fixed)", result.errors),
        ("Regressions", result.regressions),
        ("Flags (not silently compared)", result.flags),
        ("Added (new run only)", [f"{t} / {m}" for t, m in result.added]),
        ("Removed (old run only)", [f"{t} / {m}" for t, m in result.removed]),
    ):
        if entries:
            lines += ["", heading.format(f"{title}:"), *(bullet + e for e in entries)]
    return lines


def _run_label(run: Run) -> str:
    details = ", ".join(x for x in (run.commit and f"commit {run.commit[:12]}", run.datetime) if x)
    return f"{run.path} ({details})" if details else run.path


def render(result: RunDiff, output_format: str) -> str:
    if output_format == "json":
        return json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n"
    if output_format == "markdown":
        return format_markdown(result)
    return format_table(result)
