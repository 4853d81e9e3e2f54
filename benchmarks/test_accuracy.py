"""Each task x model pair is one test: generate (timed by pytest-benchmark), score, record, assert a threshold."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks import thresholds
from benchmarks.record import Record
from benchmarks.runner import build_record, check_error_rate, eval_examples, score_items, timed_generate
from models import catalog, progress


def test_accuracy(benchmark, pair, settings, task_for, prepared_for, baseline_records, pytestconfig):
    with progress.labelled("-".join(pair)):  # progress lines name the pair, as the test id does
        _run_pair(benchmark, pair, settings, task_for, prepared_for, baseline_records, pytestconfig)


def _run_pair(benchmark, pair, settings, task_for, prepared_for, baseline_records, pytestconfig):
    task_name, model_name = pair
    task, entry = task_for(task_name), catalog.get(model_name)
    prepared = prepared_for(entry, task)
    examples = eval_examples(task, settings)

    completions, wall_s = timed_generate(
        prepared.model, examples, task, settings,
        runner=lambda fn, *args: benchmark.pedantic(fn, args=args, rounds=1, iterations=1),
    )
    scores = score_items(task, examples, completions, settings.data)
    record = build_record(task, entry, prepared, examples, completions, scores, wall_s, settings)
    benchmark.extra_info.update(record.to_json())  # first: whatever fails from here on, the run is recorded
    threshold = thresholds.lookup(task.name, settings.data.label, entry.name,
                                  pytestconfig.getoption("thresholds") or thresholds.THRESHOLDS_FILE)
    record = dataclasses.replace(record, threshold=threshold.to_json())
    benchmark.extra_info["threshold"] = threshold.to_json()

    check_error_rate(record, settings.max_error_rate)  # an outage is not an accuracy: it fails on its own terms
    if baseline_records is not None:
        check_against_baseline(baseline_records, record)
    headline = record.headline_metric
    assert record.accuracy is not None, (
        f"{task.name} x {entry.name}: no item could be scored ({record.to_json()['metrics']})")
    assert record.accuracy >= threshold.value, (
        f"{task.name} x {entry.name} on {settings.data.label}: {record.headline} = {record.accuracy:.3f} "
        f"(95% CI {record.ci95[0]:.3f}-{record.ci95[1]:.3f}, n={headline.n}) "
        f"is below the threshold {threshold.value:.3f} set in {threshold.file} [{threshold.key}]"
    )


def check_against_baseline(baseline_records: dict[tuple[str, str], Record], record: Record) -> None:
    """Fail when this pair regressed against the --baseline run (a pair new to this run passes)."""
    from benchmarks.gate import GateRules, diff_records, format_row

    old = baseline_records.get(record.pair)
    if old is not None:
        pair = diff_records(old, record, GateRules())
        if pair.errors:  # allowed by --max-error-rate, but a partial run is not compared (as in ftbench diff)
            progress.warn(f"{record.task} x {record.model}: not compared with --baseline: {pair.errors[0]}")
        if pair.regressions:
            pytest.fail(f"regressed against --baseline: {'; '.join(pair.regressions)}\n{format_row(pair)}")
