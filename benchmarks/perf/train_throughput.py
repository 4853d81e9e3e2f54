"""ftbench's LoRA trainer vs a seed-style transformers Trainer: real (non-padding) tokens/s and peak RSS.

    python -m benchmarks.perf.train_throughput [--task spider] [--data fixtures] [--steps 20] [--batch-size 8]

Both contenders train the same LoRA adapter shape on the same model, pairs and batch size for the same number of
steps, each in a fresh subprocess so that its peak RSS is its own. The baseline is the seed's setup: transformers
`Trainer`, labels = input_ids (loss and vocabulary logits over every position), group-by-length sampling,
`DataCollatorForSeq2Seq` padding to a multiple of 8. Both compute in the same precision: what `auto` picks on this
machine (bf16 with AMX/AVX512-BF16, else fp32), or `--precision`. Prints a Markdown table and the ratios; `--json`
saves them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.cli.finetune import add_memory_arguments
from models.files import write_atomic

CONTENDERS = ("seed-style", "ftbench")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.contender:
        print(json.dumps(_run_contender(args)))
        return 0
    results = {name: _in_subprocess(name, args) for name in CONTENDERS}
    print(_markdown(results, args))
    if args.json:
        write_atomic(args.json, json.dumps(results, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-lora", help="a fine-tuned catalog entry")
    parser.add_argument("--task", default="spider")
    parser.add_argument("--data", default="fixtures", help="fixtures, or a directory in the seed's layout")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per contender")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default=None,
                        help="autocast precision of both contenders (default: the recipe's, 'auto': what this CPU "
                             "computes natively)")
    add_memory_arguments(parser)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)  # internal: run one in-process
    return parser


def _in_subprocess(name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "benchmarks.perf.train_throughput", "--contender", name, "--model", args.model,
               "--task", args.task, "--data", args.data, "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
    if args.precision:
        command += ["--precision", args.precision]
    if args.gradient_checkpointing is not None:
        command += ["--gradient-checkpointing" if args.gradient_checkpointing else "--no-gradient-checkpointing"]
    if args.micro_batch_size:
        command += ["--micro-batch-size", str(args.micro_batch_size)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _setup(args: argparse.Namespace):
    import dataclasses

    from benchmarks.data import resolve_data
    from benchmarks.tasks import get_task, training_pairs
    from models import catalog

    entry = catalog.get(args.model)
    task = get_task(args.task)
    pairs = training_pairs(task, task.examples(resolve_data(args.data), task.train_split))
    recipe = dataclasses.replace(entry.recipe, batch_size=args.batch_size, max_steps=args.steps, epochs=1e9,
                                 precision=args.precision or entry.recipe.precision)
    return entry, pairs, recipe.resolved()  # both contenders compute in the precision `auto` picks here


def _run_contender(args: argparse.Namespace) -> dict:
    entry, pairs, recipe = _setup(args)
    model, tokenizer, _ = entry.load_base()
    if args.contender == "ftbench":
        real, padded, seconds, plan = _ftbench(model, tokenizer, pairs, recipe, args)
    else:
        real, padded, seconds = _seed_style(model, tokenizer, pairs, recipe)
    ours = args.contender == "ftbench"
    return {"contender": args.contender, "steps": recipe.max_steps, "batch_size": recipe.batch_size,
            "precision": recipe.precision,
            "setup": (f"LoRA dropout {recipe.dropout}, gradient checkpointing {'on' if plan[0] else 'off'}, "
                      f"passes of {plan[1]}" if ours else f"LoRA dropout {recipe.dropout}, labels = input_ids"),
            "real_tokens": real, "padding_fraction": 1 - real / padded, "seconds": seconds,
            "real_tokens_per_s": real / seconds, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def _ftbench(model, tokenizer, pairs, recipe, args: argparse.Namespace):
    from accelerate import Accelerator

    from models.finetune import lora

    options = lora.RunOptions(checkpoint_every=0, progress=False, gradient_checkpointing=args.gradient_checkpointing,
                              micro_batch_size=args.micro_batch_size)
    peft_model = lora._setup(model, recipe, options)
    examples, _ = lora._tokenize(tokenizer, pairs, recipe)
    started = time.perf_counter()
    info = lora._fit(peft_model, examples, [], recipe, options, Accelerator(cpu=True), pad_id=lora._pad_id(tokenizer),
                     partial=Path("/nonexistent/ftbench-perf"))
    seconds = time.perf_counter() - started
    plan = lora.memory_plan(options, recipe, cuda=False)
    return info["real_tokens"], info["real_tokens"] / (1 - info["padding_fraction"]), seconds, plan


def _seed_style(model, tokenizer, pairs, recipe):
    """The seed's notebook: tokenize prompt + answer, labels = input_ids, Trainer with group_by_length."""
    import tempfile

    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    rows = []
    for pair in pairs:
        encoded = tokenizer(pair.prompt + pair.completion, truncation=True, max_length=recipe.max_length)
        encoded["input_ids"].append(tokenizer.eos_token_id)
        encoded["attention_mask"].append(1)
        rows.append({**encoded, "labels": list(encoded["input_ids"])})
    config = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=list(recipe.target_modules), bias="none", task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    collator = _CountingCollator(DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=8, return_tensors="pt", padding=True))
    with tempfile.TemporaryDirectory() as out:
        arguments = TrainingArguments(
            output_dir=out, per_device_train_batch_size=recipe.batch_size, max_steps=recipe.max_steps,
            learning_rate=recipe.learning_rate, warmup_steps=min(recipe.warmup_steps, recipe.max_steps - 1),
            train_sampling_strategy="group_by_length", save_strategy="no", report_to=[], logging_steps=10_000, use_cpu=True,
            dataloader_num_workers=0, disable_tqdm=True, bf16=recipe.precision == "bf16",
        )
        trainer = Trainer(model=peft_model, args=arguments, train_dataset=Dataset.from_list(rows), data_collator=collator)
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    return collator.real, collator.padded, seconds


class _CountingCollator:
    """Wraps a collator to count real and padded tokens of every batch it builds."""

    def __init__(self, inner):
        self.inner, self.real, self.padded = inner, 0, 0

    def __call__(self, features):
        batch = self.inner(features)
        self.real += int(batch["attention_mask"].sum())
        self.padded += batch["attention_mask"].numel()
        return batch


def _markdown(results: dict[str, dict], args: argparse.Namespace) -> str:
    base, ours = results["seed-style"], results["ftbench"]
    from models.precision import cpu_description

    lines = [f"LoRA training, {args.model} on {args.task} ({args.data}), batch {args.batch_size}, {args.steps} steps",
             f"{cpu_description()}",
             "", "| trainer | precision | setup | real tokens/s | padding | peak RSS (GB) | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in (base, ours):
        lines.append(f"| {r['contender']} | {r['precision']} | {r['setup']} | {r['real_tokens_per_s']:.0f} | "
                     f"{r['padding_fraction']:.0%} | {r['peak_rss_gb']:.2f} | {r['seconds']:.1f} |")
    lines += ["", f"ftbench / seed-style: {ours['real_tokens_per_s'] / base['real_tokens_per_s']:.2f}x real tokens/s, "
                  f"{ours['peak_rss_gb'] / base['peak_rss_gb']:.2f}x peak RSS"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
