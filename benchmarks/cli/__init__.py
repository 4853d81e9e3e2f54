"""`ftbench`: what is not a test. Benchmarks themselves run with `pytest benchmarks`.

    ftbench models                     the catalog of model names
    ftbench finetune --task T --model M   train (or reuse) the LoRA adapter the benchmarks will use
    ftbench score-sql --gold G --pred P --db DIR   score SQL predictions like the official Spider evaluator
    ftbench diff OLD.json NEW.json     compare two benchmark runs, gate on regressions
    ftbench report RUN.json [...]      Markdown table and plots of one or more runs (--volume N: which to pick)
    ftbench estimate --task T --model M   what an OpenAI job and its requests would cost (--json: a record)

Exit codes: 0 success, 1 a regression or failed check, 2 unusable input or options.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from models.errors import FtbenchError

# One module per subcommand in this folder, each with add_arguments(parser) and run(args) -> int over library
# functions; the modules import their heavy dependencies (torch, openai, matplotlib) inside run(), so building the
# parser stays fast.
SUBCOMMANDS = {
    "finetune": ("benchmarks.cli.finetune", "train (or reuse) a fine-tuned entry's LoRA adapter or OpenAI job for a task"),
    "score-sql": ("benchmarks.cli.score_sql", "score SQL predictions (official Spider file formats)"),
    "diff": ("benchmarks.cli.diff", "compare two pytest-benchmark JSON runs and gate on regressions"),
    "report": ("benchmarks.cli.report", "Markdown table and PNG plots of benchmark runs"),
    "estimate": ("benchmarks.cli.estimate", "cost of fine-tuning and evaluating an OpenAI model on a task (no API call)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except FtbenchError as err:
        print(f"ftbench: error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ftbench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser("models", help="list the model catalog")
    models.set_defaults(handler=_list_models)

    for name, (module, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.set_defaults(handler=_lazy(module), module=module)
        _add_lazy_arguments(sub, module)
    return parser


def _add_lazy_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    importlib.import_module(module).add_arguments(parser)


def _lazy(module: str):
    return lambda args: importlib.import_module(module).run(args)


def _list_models(args: argparse.Namespace) -> int:
    from models.catalog import CATALOG, PATTERNS

    width = max(map(len, CATALOG))
    for entry in CATALOG.values():
        print(f"{entry.name:<{width}}  {entry.description}")
    for description in PATTERNS.values():
        print(description)
    return 0
