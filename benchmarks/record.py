"""The result record: what one benchmark test stores in pytest-benchmark's `extra_info`.

It is the contract that `ftbench diff`, `ftbench report` and the `--baseline` gate read, so it is versioned
(`SCHEMA`), holds JSON values only, and is filled before the accuracy assert so a failing test still records.

Shape (schema 2; schema 1 records, written before `errors` existed, still load as records without errors):

    {"schema": 2, "task": "spider", "model": "smollm2-135m-lora",
     "data": {"source": "fixtures", "split": "val", "n": 32, "fingerprint": "sha256:..."},
     "model_fingerprint": {"base": ..., "adapter": "sha256:..." | null, "recipe": {...} | null, ...},
     "metric": "execution", "accuracy": 0.31, "ci95": [0.18, 0.48],   # over the items that got an answer
     "accuracy_basis": "32 of 33 items: those with an answer and a verdict on execution (1 errors, never counted wrong; see errors)",
     "metrics": {"execution": {"value": 0.31, "correct": 10, "n": 32, "ci95": [...], "errors": 0}, ...},
     "items": {"val/0000": {"execution": true, "exact": false, ...}, ...},   # per-item outcomes, null = not scored
     "predictions": {"val/0000": "SELECT ...", "val/0007": null, ...},       # null: no answer (see errors)
     "reasons": {"val/0003": {"execution": "syntax error: ..."}, ...},        # why an answer is wrong
     "errors": {"count": 1, "rate": 0.03, "by_reason": {"http 503 after 6 attempts": 1},
                "first": [{"id": "val/0007", "stage": "generate", "reason": "http 503 after 6 attempts: ..."}],
                "items": {"val/0007": {"generate": "http 503 ..."}}},          # errors are never scored as wrong
     "requests": {"endpoint": "http://127.0.0.1:8000/v1", "timeout_s": 60.0, "max_retries": 5, ...} | null,
     "latency_s": {"p50": ..., "p95": ..., "mean": ..., "total": ...},
     "throughput": {"examples_per_s": ..., "completion_tokens_per_s": ...},
     "tokens": {"prompt": ..., "completion": ...},
     "cost_usd": {"train": ..., "eval": ..., "per_1k_requests": ..., "prices_date": "...", "pricing": {...}},
     "training": {...} | null,   # wall_s, tokens, steps, hardware, loss: see models.finetune
     "machine": {"hardware": ..., "platform": ..., "torch": ..., "transformers": ...,
                 "precision_auto": "fp32", "precision_reason": "CPU: AVX2, no AMX/AVX512-BF16: ..."},
     "threshold": {"value": 0.2, "file": "fixtures/thresholds.toml", "key": "spider.fixtures.smollm2-135m-lora"}}
"""

from __future__ import annotations

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
"""Schema 1 lacks `errors` and `requests`: read as a run in which no item failed."""
FIRST_ERRORS = 5
"""How many errors a record lists in full (`errors.first`); `errors.items` keeps every one."""

import math
import platform
from collections.abc import Sequence
from typing import Any

from benchmarks.stats import percentile, wilson_interval
from models.base import Completion


def summarize_metric(values: Sequence[bool | float | None]) -> dict[str, Any]:
    """Accuracy-style summary of one metric's per-item outcomes (None = not scored, left out of n).

    Booleans get a Wilson 95% interval; floats (slot F1) their mean with a normal-approximation interval.

    >>> summarize_metric([True, False, None, True])["value"]
    0.6666666666666666
    >>> summarize_metric([None])["n"]
    0
    """
    scored = [v for v in values if v is not None]
    n = len(scored)
    if n == 0:
        return {"value": None, "n": 0, "ci95": None}
    if all(isinstance(v, bool) for v in scored):
        correct = sum(scored)
        return {"value": correct / n, "correct": correct, "n": n, "ci95": list(wilson_interval(correct, n))}
    mean = sum(scored) / n
    spread = math.sqrt(sum((v - mean) ** 2 for v in scored) / (n - 1)) if n > 1 else 0.0
    half = 1.96 * spread / math.sqrt(n)
    return {"value": mean, "n": n, "ci95": [max(0.0, mean - half), min(1.0, mean + half)]}


def error_summary(item_errors: dict[str, dict[str, str]], n: int) -> dict[str, Any]:
    """The record's `errors` from {item id: {stage: reason}}; an item with any error counts once.

    >>> summary = error_summary({"val/1": {"generate": "http 503 after 6 attempts: Service Unavailable"}}, 4)
    >>> summary["count"], summary["rate"], summary["by_reason"]
    (1, 0.25, {'http 503 after 6 attempts': 1})
    """
    by_reason: dict[str, int] = {}
    first = []
    for item_id, stages in item_errors.items():
        for stage, reason in stages.items():
            kind = reason.split(":")[0]  # 'http 503 after 6 attempts', 'scorer error', 'gold query failed', ...
            by_reason[kind] = by_reason.get(kind, 0) + 1
            if len(first) < FIRST_ERRORS:
                first.append({"id": item_id, "stage": stage, "reason": reason})
    return {"count": len(item_errors), "rate": len(item_errors) / n if n else 0.0, "by_reason": by_reason,
            "first": first, "items": item_errors}


def errors_of(record: dict[str, Any]) -> dict[str, Any]:
    """A record's `errors`, also for schema 1 records (which had none)."""
    return record.get("errors") or {"count": 0, "rate": 0.0, "by_reason": {}, "first": [], "items": {}}


def latency_summary(completions: Sequence[Completion], total_s: float) -> dict[str, Any]:
    """Per-item latency percentiles of the items answered in this run (failed attempts are left out); when every
    answer came from the prediction cache, of the timings stored with them, labelled so. `total` is this run's wall
    time either way."""
    answered = [c for c in completions if c.error is None]
    generated = [c.latency_s for c in answered if not c.cached]
    per_item = generated or [c.latency_s for c in answered]
    source = "generated" if generated or not answered else "stored timings of cached items"
    if not per_item:  # every item failed: no latency to report (JSON has no NaN)
        return {"p50": None, "p95": None, "mean": None, "total": total_s, "source": "no item answered",
                "generated_items": 0, "cached_items": 0, "failed_items": len(completions)}
    return {"p50": percentile(per_item, 50), "p95": percentile(per_item, 95), "mean": sum(per_item) / len(per_item), "total": total_s,
            "source": source, "generated_items": len(generated), "cached_items": len(answered) - len(generated),
            "failed_items": len(completions) - len(answered)}


def machine_info(hardware_description: str, hardware_key: str) -> dict[str, str]:
    import torch
    import transformers

    from models.precision import native_precision

    auto, why = native_precision("auto")
    return {"hardware": hardware_description, "hardware_key": hardware_key, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "precision_auto": auto, "precision_reason": why}
