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
import math
import os
from pathlib import Path

from models.money import DEFAULT_MAX_COST_USD


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="spider, viggo, or jsonl (with --jsonl)")
    parser.add_argument("--model", required=True,
                        help="a fine-tuned catalog entry (smollm2-135m-lora, gpt-4o-mini-ft, ...) or lora:<id-or-folder>")
    parser.add_argument("--data", default="fixtures", help="fixtures, hub, or a directory in the seed's layout")
    parser.add_argument("--jsonl", type=Path, default=None, help="folder with train.jsonl and eval.jsonl (task jsonl)")
    parser.add_argument("--recipe", type=Path, default=None,
                        help="JSON file of LoRA recipe fields overriding the entry's (see models/finetune/recipe.py)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one recipe field, e.g. --set r=8 --set precision=bf16 (repeatable)")
    parser.add_argument("--checkpoint-every", type=int, default=20, metavar="STEPS",
                        help="save a resumable checkpoint every N optimizer steps (0: never)")
    add_memory_arguments(parser)
    parser.add_argument("--yes", action="store_true", help="allow paid work (OpenAI fine-tuning jobs)")
    parser.add_argument("--max-cost", type=float, default=DEFAULT_MAX_COST_USD, metavar="USD",
                        help="refuse paid work whose estimate is above this")
    parser.add_argument("--prices", type=Path, default=None, help="price table TOML")
    parser.add_argument("--openai-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="seconds per attempt of an OpenAI API request before it is abandoned and retried")
    parser.add_argument("--openai-max-retries", type=int, default=5, metavar="N",
                        help="retries of an OpenAI API request after a 429, 5xx, timeout or connection error")


def add_memory_arguments(parser: argparse.ArgumentParser) -> None:
    """How training trades memory for compute (none of it changes what the adapter learns)."""
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                        help="recompute activations in the backward pass (default: on CUDA only; on CPU micro-batches "
                             "bound the memory at no extra compute)")
    parser.add_argument("--micro-batch-size", type=int, default=None, metavar="N",
                        help="pairs per forward/backward pass; the gradient stays the whole batch's (default: 4 on CPU "
                             "without checkpointing, else the whole batch)")


def run(args: argparse.Namespace) -> int:
    from benchmarks.data import resolve_data
    from benchmarks.runner import OpenAISettings, Settings, TrainSettings, prepare_model
    from benchmarks.tasks import get_task
    from models import catalog
    from models.errors import ConfigError
    from models.pricing import load_prices

    entry = catalog.get(args.model)
    if not entry.finetuned:
        tuned = [name for name, e in catalog.CATALOG.items() if e.finetuned] + ["lora:<id-or-folder>"]
        raise ConfigError(f"{args.model!r} is not a fine-tuned entry; choose one of {tuned}.")
    if args.recipe or args.set:
        if entry.backend != "hf":
            raise ConfigError(f"--recipe and --set apply to LoRA entries; {args.model!r} is an OpenAI job")
        recipe = entry.recipe if args.recipe is None else type(entry.recipe).from_file(args.recipe, entry.recipe)
        entry = dataclasses.replace(entry, recipe=recipe.with_overrides(args.set))
    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0 (0: no checkpoints), got {args.checkpoint_every}")
    task = get_task(args.task, jsonl_folder=args.jsonl)
    if not 0 < args.openai_timeout < math.inf or args.openai_max_retries < 0:
        raise ConfigError(f"--openai-timeout must be a positive number of seconds (got {args.openai_timeout}) and "
                          f"--openai-max-retries an integer >= 0 (got {args.openai_max_retries})")
    settings = Settings(data=resolve_data(args.data), limit=None, prices=load_prices(args.prices),
                        allow_paid=args.yes, max_cost_usd=args.max_cost,
                        openai=OpenAISettings(timeout_s=args.openai_timeout, max_retries=args.openai_max_retries),
                        train=TrainSettings(checkpoint_every=args.checkpoint_every,
                                            gradient_checkpointing=args.gradient_checkpointing,
                                            micro_batch_size=args.micro_batch_size))
    prepared = prepare_model(entry, task, settings)
    if int(os.environ.get("RANK", "0")) == 0:  # under accelerate launch / torchrun, one process reports
        info = {k: v for k, v in (prepared.training or {}).items() if k != "loss_curve"}
        print(json.dumps(info, indent=2, default=str))
    return 0
