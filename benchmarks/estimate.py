"""`ftbench estimate`: what fine-tuning an OpenAI model on a task, then evaluating it, should cost. No API call, no key.

Training: the exact token count of the training file that `pytest benchmarks` would upload (OpenAI's encoding,
OpenAI's chat framing) x epochs x the training price. Evaluation, per 1K requests: the mean exact input tokens of the
task's eval prompts x the input price, plus the mean tokens of the reference answers (what a correct model outputs)
x the output price.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from models.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="spider, viggo, or jsonl (with --jsonl)")
    parser.add_argument("--model", required=True, help="an OpenAI fine-tuned catalog entry, e.g. gpt-3.5-turbo-ft")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="epochs of the job; when unset, the catalog's value for the task, else OpenAI's auto rule")
    parser.add_argument("--data", default="fixtures", help="fixtures, hub, or a directory in the seed's layout")
    parser.add_argument("--jsonl", default=None, help="folder with train.jsonl and eval.jsonl (task jsonl)")
    parser.add_argument("--prices", type=Path, default=None,
                        help="price table TOML; when unset, $FTBENCH_PRICES, else models/prices.toml")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from benchmarks.data import resolve_data
    from benchmarks.runner import Settings, openai_job_spec, openai_training_rows
    from benchmarks.tasks import chat_rows, get_task
    from models import catalog
    from models.finetune.openai_ft import estimate_training
    from models.pricing import load_prices
    from models.tokens import chat_tokens

    entry = catalog.get(args.model)
    if entry.backend != "openai" or not entry.finetuned:
        tuned = [name for name, e in catalog.CATALOG.items() if e.backend == "openai" and e.finetuned]
        raise ConfigError(f"{args.model!r} is not an OpenAI fine-tuned entry; choose one of {tuned}.")
    task = get_task(args.task, jsonl_folder=Path(args.jsonl) if args.jsonl else None)
    settings = Settings(data=resolve_data(args.data), limit=None, prices=load_prices(args.prices))
    train_rows, validation_rows, split = openai_training_rows(task, settings)
    spec = openai_job_spec(entry, task, len(train_rows), settings, epochs=args.epochs)
    training = estimate_training(train_rows, validation_rows, spec, settings.prices)
    whole_split = chat_rows(task, task.examples(settings.data, task.train_split))

    print(f"ftbench estimate: {task.name} x {entry.name}, data {settings.data.root or settings.data.kind}, "
          f"prices of {settings.prices.date} ({settings.prices.source})")
    print(f"base model         {spec.base_model} (encoding {spec.encoding})")
    print(f"training file      {training.examples:,} examples of the {task.train_split} split; validation: "
          f"{training.validation_examples:,} examples, {split['validation']}")
    print(f"tokens per epoch   {training.tokens_per_epoch:,} (largest example {training.max_example_tokens:,} of "
          f"{spec.max_tokens_per_example:,} allowed)")
    print(f"epochs             {spec.epochs} ({_epochs_source(args.epochs, entry, task)})")
    print(f"trained tokens     {training.trained_tokens:,}")
    print(f"training price     ${training.usd_per_million:.2f} per 1M tokens ({spec.price_family})")
    print(f"training cost      ${training.usd:.2f}")
    if len(whole_split) != training.examples:
        tokens = sum(chat_tokens(row["messages"], spec.encoding) for row in whole_split)
        usd = tokens * spec.epochs * training.usd_per_million / 1e6
        print(f"  whole {task.train_split} split ({len(whole_split):,} examples, no validation holdout, as the seed "
              f"trained): {tokens:,} tokens per epoch -> {tokens * spec.epochs:,} trained tokens -> ${usd:.2f}")
    _print_eval_estimate(task, settings, spec)
    return 0


def _epochs_source(override: int | None, entry, task) -> str:
    if override:
        return "--epochs"
    if task.name in entry.finetune.epochs_by_task:
        return f"catalog: the seed's value for {task.name}"
    return "OpenAI's auto rule for this many examples"


def _print_eval_estimate(task, settings, spec) -> None:
    from models.openai_api import estimate_requests
    from models.tokens import text_tokens

    examples = task.examples(settings.data, task.eval_split)
    if not examples:
        return
    messages = [task.prompt(e).chat() or [{"role": "user", "content": task.prompt(e).text}] for e in examples]
    answers = [text_tokens(e.target, spec.encoding) for e in examples]
    estimate = estimate_requests(messages, answers, spec.encoding, settings.prices.token_prices(spec.price_family))
    n = estimate.requests
    print(f"evaluation         {n:,} prompts of the {task.eval_split} split, fine-tuned model prices "
          f"${estimate.input_usd_per_million:.2f} in / ${estimate.output_usd_per_million:.2f} out per 1M tokens")
    print(f"  input            mean {estimate.input_tokens / n:,.1f} tokens per request (exact, chat framing)")
    print(f"  output           mean {estimate.output_tokens / n:,.1f} tokens per request (reference answers)")
    print(f"  per 1K requests  ${estimate.usd_per_1k_requests:.2f}; the whole {task.eval_split} split ${estimate.usd:.2f}")
