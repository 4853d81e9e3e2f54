"""`ftbench finetune`: the trainer the benchmarks use, run outside pytest, e.g. on GPUs under `accelerate launch`.

    ftbench finetune --task spider --model smollm2-135m-lora --data ../shared/data
    ftbench finetune --task viggo --model lora:Qwen/Qwen2.5-0.5B --recipe my_recipe.json --set r=8 --set precision=bf16
    accelerate launch --num_processes 4 -m benchmarks.cli finetune --task spider --model codellama-34b-lora ...

The adapter lands in the same cache the benchmarks read (keyed by base + recipe + training pairs), so a following
`pytest benchmarks` with the same model, task, data and recipe reuses it. Rerunning after a crash resumes from the
last checkpoint. OpenAI entries run their fine-tuning job (paid: needs --yes, and the estimate under --max-cost).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from benchmarks.options import FINETUNE, add_to_argparse, offered_by, option_values, settings_from_options

MEMORY_OPTIONS = ["gradient-checkpointing", "micro-batch-size"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.HelpFormatter  # the shared options say their defaults in words already
    parser.add_argument("--task", required=True, help="spider, viggo, or jsonl (with --jsonl)")
    parser.add_argument("--model", required=True,
                        help="a fine-tuned catalog entry (smollm2-135m-lora, gpt-4o-mini-ft, ...) or lora:<id-or-folder>")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one recipe field after --recipe, e.g. --set r=8 --set precision=bf16 "
                             "(repeatable)")
    parser.add_argument("--yes", action="store_true", help="allow paid work (OpenAI fine-tuning jobs)")
    add_to_argparse(parser, offered_by(FINETUNE))


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """How training trades memory for compute (none of it changes what the adapter learns)."""
    add_to_argparse(parser, MEMORY_OPTIONS)


def run(args: argparse.Namespace) -> int:
    from benchmarks.runner import prepare_model
    from benchmarks.tasks import get_task
    from models import catalog
    from models.errors import ConfigError

    entry = catalog.get(args.model)
    if not entry.finetuned:
        tuned = [name for name, e in catalog.CATALOG.items() if e.finetuned] + ["lora:<id-or-folder>"]
        raise ConfigError(f"{args.model!r} is not a fine-tuned entry; choose one of {tuned}.")
    if args.recipe or args.set:
        if entry.backend != "hf":
            raise ConfigError(f"--recipe and --set apply to LoRA entries; {args.model!r} is an OpenAI job")
        recipe = entry.recipe if args.recipe is None else type(entry.recipe).from_file(args.recipe, entry.recipe)
        entry = dataclasses.replace(entry, recipe=recipe.with_overrides(args.set))
    task = get_task(args.task, jsonl_folder=args.jsonl)
    # --recipe and --set are applied to the entry above: the backend must not apply the recipe file again
    settings = settings_from_options(option_values(vars(args) | {"recipe": None}), allow_paid=args.yes)
    prepared = prepare_model(entry, task, settings)
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch / torchrun, one process reports
        info = {k: v for k, v in (prepared.training or {}).items() if k != "loss_curve"}
        print(json.dumps(info, indent=2, default=str))
    return 0
