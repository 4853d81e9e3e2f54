"""`ftbench`: what is not a test. Benchmarks themselves run with `pytest benchmarks`.

    ftbench models                     the catalog of model names
    ftbench finetune --task T --model M   train (or reuse) the LoRA adapter the benchmarks will use
    ftbench score-sql --gold G --pred P --db DIR   score SQL predictions like the official Spider evaluator
    ftbench diff OLD.json NEW.json     compare two benchmark runs, gate on regressions
    ftbench report RUN.json [...]      Markdown table and plots of one or more runs

Exit codes: 0 success, 1 a regression or failed check, 2 unusable input or options.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from models.errors import FtbenchError

# Subcommands in their own modules, imported only when used: each has add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "score-sql": ("benchmarks.score_sql", "score SQL predictions (official Spider file formats)"),
    "diff": ("benchmarks.diff", "compare two pytest-benchmark JSON runs and gate on regressions"),
    "report": ("benchmarks.report", "Markdown table and PNG plots of benchmark runs"),
    "estimate": ("benchmarks.estimate", "cost of fine-tuning and evaluating an OpenAI model on a task (no API call)"),
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

    finetune = commands.add_parser("finetune", help="train (or reuse) a catalog entry's LoRA adapter for a task",
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    finetune.add_argument("--task", required=True, help="spider, viggo, or jsonl (with --jsonl)")
    finetune.add_argument("--model", required=True, help="a fine-tuned catalog entry, e.g. smollm2-135m-lora")
    finetune.add_argument("--data", default="fixtures", help="fixtures, hub, or a directory in the seed's layout")
    finetune.add_argument("--jsonl", default=None, help="folder with train.jsonl and eval.jsonl (task jsonl)")
    finetune.set_defaults(handler=_finetune)

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
    from models.catalog import CATALOG

    width = max(map(len, CATALOG))
    for entry in CATALOG.values():
        print(f"{entry.name:<{width}}  {entry.description}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from benchmarks.data import resolve_data
    from benchmarks.runner import Settings, prepare_model
    from benchmarks.tasks import get_task
    from models import catalog
    from models.errors import ConfigError
    from models.pricing import load_prices

    entry = catalog.get(args.model)
    if not entry.finetuned:
        tuned = [name for name, e in catalog.CATALOG.items() if e.finetuned]
        raise ConfigError(f"{args.model!r} is not a fine-tuned entry; choose one of {tuned}.")
    task = get_task(args.task, jsonl_folder=Path(args.jsonl) if args.jsonl else None)
    settings = Settings(data=resolve_data(args.data), limit=None, prices=load_prices())
    prepared = prepare_model(entry, task, settings)
    info = {k: v for k, v in (prepared.training or {}).items() if k != "loss_curve"}
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
