"""The pieces the runner builds a result record from (see `benchmarks/record.py` for the record itself): metric
summaries, the error summary, latency percentiles, the machine, and the nulling of non-finite numbers.

They return plain JSON values, as `runner.build_record` assembles them; `benchmarks.record` re-exports them.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from typing import Any

from benchmarks.stats import percentile, wilson_interval
from models.base import Completion

FIRST_ERRORS = 5
"""How many errors a record lists in full (`errors.first`); `errors.items` keeps every one."""


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


def nonfinite_to_null(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """`value` with every NaN or infinity replaced by None (JSON has no spelling for them), and their paths.

    >>> nonfinite_to_null({"latency_s": {"p50": float("nan"), "p95": 1.0}, "ci95": [0.1, float("inf")]})
    ({'latency_s': {'p50': None, 'p95': 1.0}, 'ci95': [0.1, None]}, ['latency_s.p50', 'ci95[1]'])
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None, [path]
    if isinstance(value, dict):
        pairs = [(k, nonfinite_to_null(v, f"{path}.{k}" if path else str(k))) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, [p for _, (_, found) in pairs for p in found]
    if isinstance(value, (list, tuple)):
        items = [nonfinite_to_null(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return [v for v, _ in items], [p for _, found in items for p in found]
    return value, []


def first_errors(errors: dict[str, Any], shown: int = 3) -> str:
    """The first errors of a record's `errors`, one clause each, for messages.

    >>> first_errors(error_summary({"val/1": {"generate": "timeout after 60 s x 6"}}, 4))
    'val/1 generate: timeout after 60 s x 6'
    """
    return "; ".join(f"{e['id']} {e['stage']}: {e['reason']}" for e in errors["first"][:shown])


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
