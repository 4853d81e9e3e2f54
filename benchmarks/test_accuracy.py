"""Each task x model pair is one test: generate (timed by pytest-benchmark), score, record, assert a threshold."""

from __future__ import annotations

from benchmarks import thresholds
from benchmarks.runner import build_record, eval_examples, timed_generate
from models import catalog


def test_accuracy(benchmark, pair, settings, task_for, prepared_for):
    task_name, model_name = pair
    task, entry = task_for(task_name), catalog.get(model_name)
    prepared = prepared_for(entry, task)
    examples = eval_examples(task, settings)

    completions, wall_s = timed_generate(
        prepared.model, examples, task, settings,
        runner=lambda fn, *args: benchmark.pedantic(fn, args=args, rounds=1, iterations=1),
    )
    scores = task.score(examples, [c.text for c in completions], settings.data)
    record = build_record(task, entry, prepared, examples, completions, scores, wall_s, settings)
    threshold = thresholds.lookup(task.name, settings.data.label, entry.name)
    record["threshold"] = threshold.to_json()
    benchmark.extra_info.update(record)  # before the assert: a failing run still records

    assert record["accuracy"] is not None, f"{task.name} x {entry.name}: no item could be scored ({record['metrics']})"
    assert record["accuracy"] >= threshold.value, (
        f"{task.name} x {entry.name} on {settings.data.label}: {record['metric']} = {record['accuracy']:.3f} "
        f"(95% CI {record['ci95'][0]:.3f}-{record['ci95'][1]:.3f}, n={record['metrics'][record['metric']]['n']}) "
        f"is below the threshold {threshold.value:.3f} set in {threshold.file} [{threshold.key}]"
    )
