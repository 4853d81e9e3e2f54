"""Serving benchmarks (opt-in: --run-serving): each local task x model pair behind a real OpenAI-compatible server
(benchmarks/serving.py), proven to answer as evaluated, swept at rising concurrency, priced per 1K requests."""

from __future__ import annotations

import copy

from benchmarks.serving import check, run_serving
from models import catalog, progress


def test_serving(benchmark, serving_pair, settings, task_for, prepared_for, serving_options):
    task_name, model_name = serving_pair
    task, entry = task_for(task_name), catalog.get(model_name)
    with progress.labelled(f"serving {task_name}-{model_name}"):
        prepared = prepared_for(entry, task)
        device = prepared.model.fingerprint().get("device") or "cpu"  # serve where the model was evaluated
        record = benchmark.pedantic(
            run_serving, args=(entry, task, prepared, settings, serving_options),
            kwargs={"save": lambda r: benchmark.extra_info.update(copy.deepcopy(r)), "device": device},
            rounds=1, iterations=1)
    benchmark.extra_info.update(record)
    check(record)  # after the record is saved: a failed serving run keeps what it measured
