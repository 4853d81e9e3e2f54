"""Evaluation speed: a seed-style loop, raw batched `generate`, and ftbench's backend, on the same items.

    python -m benchmarks.perf.eval_throughput [--task spider] [--data fixtures] [--limit 48] [--model smollm2-135m]

All contenders decode greedily on the same model and prompts, in one process, one after the other:
  (a) seed-style: batches of 12 in file order, padded, always 100 new tokens, the first line kept afterwards;
  (b) raw `model.generate`: ftbench's batches (sorted by length, batch 8), stopping each sequence at the newline;
  (c) ftbench's HFModel without prefix reuse, and (c+) with it (the default).
It checks that every contender produced the same answers and prints examples/s and the ratios c/a and c/b.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from models.files import write_atomic


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from benchmarks.data import resolve_data
    from benchmarks.tasks import get_task
    from models import catalog
    from models.base import GenerationConfig
    from models.hf import HFModel

    task = get_task(args.task)
    examples = task.examples(resolve_data(args.data), task.eval_split)[: args.limit]
    prompts = [task.prompt(e) for e in examples]
    model, tokenizer, fingerprint = catalog.get(args.model).load_base()
    hf = HFModel(args.model, model, tokenizer, fingerprint)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, stop=tuple(task.stop), batch_size=args.batch_size)
    texts = [p.text for p in prompts]

    runs = {
        "a: seed-style loop": lambda: _seed_style(hf, texts, args.max_new_tokens),
        "b: raw batched generate": lambda: _raw_generate(hf, texts, config),
        "c: ftbench, no prefix reuse": lambda: _ftbench(hf, prompts, config, reuse=False),
        "c+: ftbench, prefix reuse": lambda: _ftbench(hf, prompts, config, reuse=True),
    }
    _ftbench(hf, prompts[:2], config, reuse=True)  # warm-up: first-call allocations are nobody's cost
    results = {}
    for name, run in runs.items():
        started = time.perf_counter()
        answers = run()
        seconds = time.perf_counter() - started
        results[name] = {"seconds": seconds, "examples_per_s": len(prompts) / seconds, "answers": answers}
    print(_markdown(results, args, len(prompts), hf))
    if args.json:
        write_atomic(args.json, json.dumps({k: {m: v for m, v in r.items() if m != "answers"} for k, r in results.items()}, indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="spider")
    parser.add_argument("--data", default="fixtures")
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--json", default=None)
    return parser


def _first_line(text: str) -> str:
    return text.split("\n")[0]


@torch.inference_mode()
def _seed_style(hf, texts: list[str], max_new_tokens: int) -> list[str]:
    """The seed's notebook loop: fixed batches of 12 in order, 100 new tokens every time, first line afterwards."""
    answers = []
    for start in range(0, len(texts), 12):
        inputs = hf.tokenizer(texts[start : start + 12], return_tensors="pt", padding=True)
        out = hf.model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens,
                                pad_token_id=hf.pad_id)
        answers += [_first_line(hf.tokenizer.decode(row, skip_special_tokens=True))
                    for row in out[:, inputs.input_ids.shape[1] :]]
    return answers


@torch.inference_mode()
def _raw_generate(hf, texts: list[str], config) -> list[str]:
    """transformers' generate on ftbench's batches (longest first), stopping each sequence at the stop string."""
    order = sorted(range(len(texts)), key=lambda i: -len(hf.tokenizer(texts[i]).input_ids))
    answers: list[str] = [""] * len(texts)
    for start in range(0, len(order), config.batch_size):
        batch = order[start : start + config.batch_size]
        inputs = hf.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True)
        out = hf.model.generate(**inputs, do_sample=False, max_new_tokens=config.max_new_tokens, pad_token_id=hf.pad_id,
                                stop_strings=list(config.stop), tokenizer=hf.tokenizer)
        for i, row in zip(batch, out[:, inputs.input_ids.shape[1] :]):
            answers[i] = _first_line(hf.tokenizer.decode(row[row != hf.pad_id], skip_special_tokens=True))
    return answers


def _ftbench(hf, prompts, config, *, reuse: bool) -> list[str]:
    hf.prefix_reuse = reuse
    return [c.text for c in hf.generate(prompts, config)]


def _markdown(results: dict, args: argparse.Namespace, n: int, hf) -> str:
    reference = results["b: raw batched generate"]["answers"]
    a, b = results["a: seed-style loop"], results["b: raw batched generate"]
    lines = [f"Evaluation, {args.model} on {args.task} ({args.data}), {n} items, batch {args.batch_size}, "
             f"max {args.max_new_tokens} new tokens, {torch.get_num_threads()} threads",
             "", "| contender | seconds | examples/s | answers equal to (b) |", "|---|---|---|---|"]
    for name, r in results.items():
        same = sum(x == y for x, y in zip(r["answers"], reference))
        lines.append(f"| {name} | {r['seconds']:.1f} | {r['examples_per_s']:.2f} | {same}/{n} |")
    c, c_plus = results["c: ftbench, no prefix reuse"], results["c+: ftbench, prefix reuse"]
    lines += ["", f"c+/a = {c_plus['examples_per_s'] / a['examples_per_s']:.2f}x, "
                  f"c+/b = {c_plus['examples_per_s'] / b['examples_per_s']:.2f}x, "
                  f"c/b = {c['examples_per_s'] / b['examples_per_s']:.2f}x "
                  f"(harness overhead without prefix reuse: {c['seconds'] / b['seconds'] - 1:+.1%}); "
                  f"shared prefix {hf.stats.prefix_tokens} tokens, prefill padding {hf.stats.padding_fraction:.1%}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
