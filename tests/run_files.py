"""Hand-made records and run files for the diff's tests: a record shaped like benchmarks/record.py writes it, the
pytest-benchmark document around it, and the `ftbench diff` command line."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.cli import main as ftbench
from benchmarks.gate import GateRules, PairDiff, diff_records
from benchmarks.record import SCHEMA, Record
from benchmarks.stats import wilson_interval

BASELINES = Path(__file__).parent.parent / "fixtures" / "baselines"

def make_record(task: str = "spider", model: str = "smollm2-135m-lora", outcomes: list[bool] | None = None,
                p50: float = 0.5, per_1k: float = 0.10, train: float = 1.00, **changes) -> dict:
    """A record (JSON) shaped like benchmarks/record.py, with `outcomes` as the headline per-item results."""
    outcomes = [True] * 30 + [False] * 10 if outcomes is None else outcomes
    n, correct = len(outcomes), sum(outcomes)
    ids = [f"val/{i:04d}" for i in range(n)]
    exact = [o and i % 2 == 0 for i, o in enumerate(outcomes)]
    record = {
        "schema": SCHEMA, "task": task, "model": model,
        "data": {"source": "fixtures", "split": "val", "n": n, "fingerprint": "sha256:" + "a" * 64},
        "model_fingerprint": {"base": "HuggingFaceTB/SmolLM2-135M-Instruct", "adapter": "sha256:" + "b" * 64,
                              "recipe": {"r": 8, "alpha": 16, "steps": 20}},
        "metric": "execution", "accuracy": correct / n, "ci95": list(wilson_interval(correct, n)),
        "metrics": {
            "execution": {"value": correct / n, "correct": correct, "n": n, "ci95": list(wilson_interval(correct, n))},
            "exact": {"value": sum(exact) / n, "correct": sum(exact), "n": n,
                      "ci95": list(wilson_interval(sum(exact), n))},
        },
        "items": {i: {"execution": o, "exact": e} for i, o, e in zip(ids, outcomes, exact)},
        "predictions": {i: "SELECT 1" for i in ids},
        "reasons": {},
        "latency_s": {"p50": p50, "p95": p50 * 2, "mean": p50 * 1.2, "total": p50 * 1.2 * n},
        "throughput": {"examples_per_s": 1 / p50, "completion_tokens_per_s": 20 / p50},
        "tokens": {"prompt": 100 * n, "completion": 20 * n},
        "cost_usd": {"train": train, "eval": per_1k * n / 1000, "per_1k_requests": per_1k,
                     "prices_date": "2025-01-15", "pricing": {"gpu_hour": 0.475}},
        "training": {"wall_s": 39.0, "steps": 20, "hardware": "cpu"},
        "machine": {"hardware": "cpu: 2 cores", "platform": "linux", "torch": "2.13.0", "transformers": "4.50.0"},
        "threshold": {"value": 0.2, "file": "fixtures/thresholds.toml", "key": f"{task}.fixtures.{model}"},
    }
    for dotted, value in changes.items():  # e.g. data__fingerprint="sha256:..."
        set_field(record, dotted.replace("__", "."), value)
    return record


def set_field(record: dict, path: str, value) -> dict:
    """Set a dotted field path ("latency_s.p50", "items.val/0003.execution") to `value`; returns the record."""
    *parents, leaf = path.split(".")
    target = record
    for key in parents:
        target = target[key]
    target[leaf] = value
    return record


def diff(old: dict, new: dict, rules: GateRules = GateRules()) -> PairDiff:
    """`diff_records` of two hand-made records, read as the typed records the gate takes."""
    return diff_records(Record.from_json(old), Record.from_json(new), rules)


def benchmark_document(records: list[dict]) -> dict:
    """The top level pytest-benchmark writes with --benchmark-json."""
    return {
        "machine_info": {"node": "ci", "processor": "x86_64", "machine": "x86_64", "python_version": "3.11.7",
                         "system": "Linux", "release": "6.1", "cpu": {"count": 2}},
        "commit_info": {"id": "0123456789abcdef0123", "time": "2025-01-15T10:00:00+00:00", "dirty": False,
                        "project": "ftbench", "branch": "main"},
        "benchmarks": [
            {"group": None, "name": f"test_accuracy[{r['task']}-{r['model']}]",
             "fullname": f"benchmarks/test_accuracy.py::test_accuracy[{r['task']}-{r['model']}]",
             "params": {"case": f"{r['task']}-{r['model']}"}, "param": f"{r['task']}-{r['model']}",
             "extra_info": r, "options": {"timer": "perf_counter", "min_rounds": 1},
             "stats": {"min": 20.0, "max": 20.0, "mean": 20.0, "stddev": 0, "rounds": 1, "median": 20.0,
                       "iqr": 0.0, "q1": 20.0, "q3": 20.0, "total": 20.0, "ops": 0.05, "data": [20.0],
                       "iterations": 1}}
            for r in records
        ],
        "datetime": "2025-01-15T10:05:00.000000+00:00",
        "version": "5.3.1",
    }


def write_run(path: Path, *records: dict) -> Path:
    path.write_text(json.dumps(benchmark_document(list(records))))
    return path


def write_runs(folder: Path, old: dict, new: dict) -> tuple[Path, Path]:
    """old.json and new.json in `folder`, one record each."""
    return write_run(folder / "old.json", old), write_run(folder / "new.json", new)


def cli(*argv) -> int:
    return ftbench(["diff", *(str(a) for a in argv)])
