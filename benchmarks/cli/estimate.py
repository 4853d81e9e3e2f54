"""`ftbench estimate`: what fine-tuning an OpenAI model on a task, then evaluating it, should cost. No API call, no key.

Training: the exact token count of the training file that `pytest benchmarks` would upload (OpenAI's encoding,
OpenAI's chat framing) x epochs x the training price. Evaluation, per 1K requests: the mean exact input tokens of the
task's eval prompts x the input price, plus the mean tokens of the reference answers (what a correct model outputs)
x the output price. A fine-tuned model is billed at the price table's [openai.finetuned.*] prices, a base model
(`--model openai-compatible --openai-model gpt-4o-mini`, or the line after a fine-tune's) at [openai.base.*].
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.options import ESTIMATE, add_to_argparse, offered_by, option_values, settings_from_options
from models.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.HelpFormatter  # the shared options say their defaults in words already
    parser.add_argument("--task", required=True, help="spider, viggo, or jsonl (with --jsonl)")
    parser.add_argument("--model", required=True, help="an OpenAI fine-tuned catalog entry, e.g. gpt-3.5-turbo-ft, "
                        "or openai-compatible with --openai-model (evaluation only)")
    add_to_argparse(parser, offered_by(ESTIMATE))
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the estimate as a record (kind 'estimate', pytest-benchmark JSON) that "
                             "`ftbench report` prices as a candidate whose accuracy is unknown")


def run(args: argparse.Namespace) -> int:
    from benchmarks.runner import training_data
    from benchmarks.tasks import chat_rows, get_task
    from models import catalog
    from models.backends.openai import job_spec
    from models.finetune.openai_ft import estimate_training
    from models.tokens import chat_tokens

    entry = catalog.get(args.model)
    if not isinstance(entry, catalog.OpenAIEntry) or not (entry.finetuned or args.openai_model):
        tuned = [name for name, e in catalog.CATALOG.items() if isinstance(e, catalog.OpenAIEntry) and e.finetuned]
        raise ConfigError(f"{args.model!r} is not an OpenAI fine-tuned entry; choose one of {tuned}, or "
                          f"openai-compatible --openai-model ID for a model's evaluation cost.")
    task = get_task(args.task, jsonl_folder=args.jsonl)
    settings = settings_from_options(option_values(vars(args)))
    if not entry.finetuned:
        if args.json is not None:
            tuned = [name for name, e in catalog.CATALOG.items() if isinstance(e, catalog.OpenAIEntry) and e.finetuned]
            raise ConfigError(f"--json writes the record of a fine-tuned candidate (training + requests); "
                              f"{args.model} --openai-model {args.openai_model} is priced for evaluation only. "
                              f"Choose one of {tuned}.")
        return _estimate_model(task, settings, args.openai_model)
    data = training_data(task, settings.data)
    train_rows, validation_rows = data.chat_rows("train"), data.chat_rows("validation")
    spec = job_spec(entry, task.name, len(train_rows), settings)  # --epochs is settings.openai.epochs
    training = estimate_training(train_rows, validation_rows, spec, settings.prices)
    whole_split = chat_rows(task, task.examples(settings.data, task.train_split))

    print(f"ftbench estimate: {task.name} x {entry.name}, data {settings.data.root or settings.data.kind}, "
          f"prices of {settings.prices.date} ({settings.prices.source})")
    print(f"base model         {spec.base_model} (encoding {spec.encoding})")
    print(f"training file      {training.examples:,} examples of the {task.train_split} split; validation: "
          f"{training.validation_examples:,} examples, {data.validation_how}")
    print(f"tokens per epoch   {training.tokens_per_epoch:,} (largest example {training.max_example_tokens:,} of "
          f"{spec.max_tokens_per_example:,} allowed)")
    print(f"epochs             {spec.epochs} ({_epochs_source(args.openai_epochs, entry, task)})")
    print(f"trained tokens     {training.trained_tokens:,}")
    print(f"training price     ${training.usd_per_million:.2f} per 1M tokens ({spec.price_family})")
    print(f"training cost      {_usd(training.usd)}")
    if len(whole_split) != training.examples:
        tokens = sum(chat_tokens(row["messages"], spec.encoding) for row in whole_split)
        usd = tokens * spec.epochs * training.usd_per_million / 1e6
        print(f"  whole {task.train_split} split ({len(whole_split):,} examples, no validation holdout, as the seed "
              f"trained): {tokens:,} tokens per epoch -> {tokens * spec.epochs:,} trained tokens -> {_usd(usd)}")
    evaluation = _print_eval_estimate(task, settings, spec.encoding, spec.price_family, finetuned=True)
    if args.json is not None:
        write_estimate_record(args.json, task, entry, settings, training, evaluation, spec)
    base = settings.prices.family_of(spec.price_family, finetuned=False)
    if base:  # what the untuned model would cost to serve: the other side of the seed's comparison
        _print_eval_estimate(task, settings, spec.encoding, base, finetuned=False, compact=True)
    return 0


def _estimate_model(task, settings, model_id: str) -> int:
    """Evaluation only, for one OpenAI model id, at the prices of its kind ('ft:' ids: fine-tuned)."""
    from models.backends.openai import is_finetuned_id
    from models.tokens import encoding_for

    finetuned = is_finetuned_id(model_id)
    family = settings.prices.family_of(model_id, finetuned=finetuned)
    if family is None:
        kind = "finetuned" if finetuned else "base"
        raise ConfigError(f"no price for {model_id!r} in {settings.prices.source}; add [openai.{kind}.\"{model_id}\"] "
                          f"with input and output USD per 1M tokens.")
    print(f"ftbench estimate: {task.name} x {model_id}, data {settings.data.root or settings.data.kind}, "
          f"prices of {settings.prices.date} ({settings.prices.source})")
    _print_eval_estimate(task, settings, encoding_for(model_id), family, finetuned=finetuned)
    return 0


def _epochs_source(override: int | None, entry, task) -> str:
    if override:
        return "--epochs"
    if task.name in entry.finetune.epochs_by_task:
        return f"catalog: the seed's value for {task.name}"
    return "OpenAI's auto rule for this many examples"


def _print_eval_estimate(task, settings, encoding: str, family: str, *, finetuned: bool, compact: bool = False):
    from models.openai_api import estimate_requests
    from models.tokens import text_tokens

    examples = task.examples(settings.data, task.eval_split)
    if not examples:
        return None
    messages = [task.prompt(e).api_messages() for e in examples]
    answers = [text_tokens(e.target, encoding) for e in examples]
    estimate = estimate_requests(messages, answers, encoding, settings.prices.token_prices(family, finetuned=finetuned))
    n = estimate.requests
    if compact:  # same prompts and answers as the line above, other prices
        print(f"base model eval    {family} at base prices ${estimate.input_usd_per_million:.2f} in / "
              f"${estimate.output_usd_per_million:.2f} out per 1M: per 1K requests {_usd(estimate.usd_per_1k_requests)}")
        return estimate
    kind = "fine-tuned" if finetuned else "base"
    print(f"evaluation         {n:,} prompts of the {task.eval_split} split, {kind} {family} prices "
          f"${estimate.input_usd_per_million:.2f} in / ${estimate.output_usd_per_million:.2f} out per 1M tokens")
    print(f"  input            mean {estimate.input_tokens / n:,.1f} tokens per request (exact, chat framing)")
    print(f"  output           mean {estimate.output_tokens / n:,.1f} tokens per request (reference answers)")
    print(f"  per 1K requests  {_usd(estimate.usd_per_1k_requests)}; the whole {task.eval_split} split "
          f"{_usd(estimate.usd)}")
    return estimate


def write_estimate_record(path: Path, task, entry, settings, training, evaluation, spec) -> None:
    """The estimate as a record `ftbench report` reads beside benchmark runs (pytest-benchmark JSON, one entry of
    kind 'estimate'): an API candidate priced by the table, its accuracy unknown until it is run."""
    import json

    from benchmarks.record import SCHEMA
    from models.files import write_atomic

    if evaluation is None:
        raise ConfigError(f"{task.name} has no {task.eval_split} rows to price requests with; nothing written to "
                          f"{path}")
    record = {"schema": SCHEMA, "kind": "estimate", "task": task.name, "model": entry.name,
              "data": settings.data.to_json() | {"split": task.eval_split, "n": evaluation.requests},
              "job": {"base_model": spec.base_model, "epochs": spec.epochs, "trained_tokens": training.trained_tokens,
                      "price_family": spec.price_family},
              "cost_usd": {"train": training.usd, "per_1k_requests": evaluation.usd_per_1k_requests,
                           "prices_date": settings.prices.date, "price_file": settings.prices.source,
                           "basis": "estimate: exact training tokens x epochs; eval prompts' exact input tokens and "
                                    "the reference answers' tokens as output, at fine-tuned prices"}}
    document = {"benchmarks": [{"name": f"estimate[{task.name}-{entry.name}]", "extra_info": record}]}
    write_atomic(path, json.dumps(document, indent=1, allow_nan=False))
    print(f"wrote {path}")


def _usd(amount: float) -> str:
    """Cents, or 2 significant digits below a dime, so a small estimate never reads $0.00."""
    from models.money import usd

    return usd(amount)[0]
