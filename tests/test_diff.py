"""`ftbench diff`: the paired test's properties, and diffs of hand-made pytest-benchmark files."""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import diff
from benchmarks.diff import DiffInputError, GateRules, diff_files, diff_records, format_row, load_records, mcnemar_exact
from benchmarks.record import SCHEMA
from benchmarks.stats import wilson_interval
from models.errors import ConfigError


# ----------------------------------------------------------------------------------------- building runs


def make_record(task: str = "spider", model: str = "smollm2-135m-lora", outcomes: list[bool] | None = None,
                p50: float = 0.5, per_1k: float = 0.10, train: float = 1.00, **changes) -> dict:
    """A schema-1 record shaped like benchmarks/record.py, with `outcomes` as the headline per-item results."""
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
        *parents, leaf = dotted.split("__")
        target = record
        for key in parents:
            target = target[key]
        target[leaf] = value
    return record


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


def cli(*argv) -> int:
    return diff.main([str(a) for a in argv])


# -------------------------------------------------------------------------------------------- paired test

counts = st.integers(min_value=0, max_value=400)
no_deadline = settings(deadline=None)  # the first example imports scipy: slow once, not a flaky test


@no_deadline
@given(counts, counts)
def test_mcnemar_is_symmetric(b, c):
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


@no_deadline
@given(counts, counts)
def test_mcnemar_is_a_probability(b, c):
    assert 0.0 <= mcnemar_exact(b, c) <= 1.0


@no_deadline
@given(counts)
def test_mcnemar_is_one_without_a_net_change(k):
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(k, k) == 1.0


@no_deadline
@given(counts, counts)
def test_mcnemar_never_rises_with_more_changes_in_the_leading_direction(b, c):
    low, high = min(b, c), max(b, c)
    assert mcnemar_exact(low, high + 1) <= mcnemar_exact(low, high)
    assert mcnemar_exact(high + 1, low) <= mcnemar_exact(high, low)


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError, match="b=-1"):
        mcnemar_exact(-1, 3)


@no_deadline
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_paired_test_counts_the_discordant_items(pairs):
    old = make_record(outcomes=[o for o, _ in pairs])
    new = make_record(outcomes=[n for _, n in pairs])
    test = diff_records(old, new, GateRules()).headline.paired
    b, c = sum(o and not n for o, n in pairs), sum(n and not o for o, n in pairs)
    assert (test.shared, test.old_better, test.new_better) == (len(pairs), b, c)
    assert test.p_value == mcnemar_exact(b, c)


@no_deadline
@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_identical_outcomes_never_regress(outcomes):
    pair = diff_records(make_record(outcomes=outcomes), make_record(outcomes=outcomes), GateRules())
    assert pair.headline.paired.p_value == 1.0
    assert pair.regressions == [] and pair.flags == []


def test_only_items_scored_in_both_runs_are_paired():
    old, new = make_record(outcomes=[True] * 10), make_record(outcomes=[False] * 10)
    new["items"]["val/0000"]["execution"] = None  # not scored in the new run
    del old["items"]["val/0009"]
    test = diff_records(old, new, GateRules()).headline.paired
    assert (test.shared, test.old_better, test.new_better) == (8, 8, 0)


def test_graded_outcomes_use_the_sign_test():
    old, new = make_record(outcomes=[True] * 6), make_record(outcomes=[True] * 6)
    for i, (before, after) in enumerate([(0.5, 0.25), (1.0, 0.5), (0.5, 0.5), (0.0, 1.0), (0.8, 0.2), (1, 0)]):
        old["items"][f"val/{i:04d}"]["execution"], new["items"][f"val/{i:04d}"]["execution"] = before, after
    test = diff_records(old, new, GateRules()).headline.paired
    assert (test.old_better, test.new_better) == (4, 1)


def test_the_module_doctests_pass():
    assert doctest.testmod(diff).failed == 0


# ----------------------------------------------------------------------------------------------- gating


def test_a_significant_large_accuracy_drop_regresses():
    pair = diff_records(make_record(outcomes=[True] * 60), make_record(outcomes=[True] * 50 + [False] * 10))
    assert pair.headline.paired.p_value == mcnemar_exact(10, 0) < 0.05
    assert len(pair.regressions) == 1 and "execution accuracy dropped 16.7 points" in pair.regressions[0]


def test_a_large_drop_that_is_not_significant_passes():
    pair = diff_records(make_record(outcomes=[True] * 10), make_record(outcomes=[True] * 8 + [False] * 2))
    assert pair.headline.paired.p_value > 0.05 and pair.regressions == []


def test_a_significant_drop_below_min_drop_passes_until_the_limit_is_lowered():
    old, new = make_record(outcomes=[True] * 2000), make_record(outcomes=[True] * 1970 + [False] * 30)
    assert diff_records(old, new, GateRules(min_drop=2.0)).regressions == []
    assert diff_records(old, new, GateRules(min_drop=1.0)).regressions


def test_an_accuracy_gain_never_regresses():
    pair = diff_records(make_record(outcomes=[False] * 40), make_record(outcomes=[True] * 40))
    assert pair.headline.paired.p_value < 1e-9 and pair.regressions == []


@pytest.mark.parametrize(("field", "old", "new", "regressed"), [
    ("p50", 0.5, 0.7, True), ("p50", 0.5, 0.6, False),
    ("per_1k", 0.10, 0.12, True), ("per_1k", 0.10, 0.105, False), ("per_1k", 0.0, 0.01, True),
    ("train", 1.0, 1.2, True), ("train", 1.0, 0.5, False),
])
def test_latency_and_cost_limits(field, old, new, regressed):
    pair = diff_records(make_record(**{field: old}), make_record(**{field: new}), GateRules())
    assert bool(pair.regressions) is regressed, pair.regressions


def test_gate_rules_reject_nonsense():
    with pytest.raises(ConfigError, match="alpha must be in"):
        GateRules(alpha=1.5)
    with pytest.raises(ConfigError, match="min_drop must be >= 0"):
        GateRules(min_drop=-1)


@pytest.mark.parametrize(("changes", "words"), [
    ({"data__fingerprint": "sha256:" + "c" * 64}, "data fingerprint differs"),
    ({"model_fingerprint__adapter": "sha256:" + "d" * 64}, "model fingerprint differs in adapter"),
    ({"cost_usd__prices_date": "2025-06-01"}, "price table date"),
    ({"machine__hardware": "NVIDIA H100"}, "hardware (machine.hardware) differs"),
])
def test_mismatches_are_flagged_not_failed(tmp_path, capsys, changes, words):
    old = write_run(tmp_path / "old.json", make_record())
    new = write_run(tmp_path / "new.json", make_record(**changes))
    assert cli(old, new, "--format", "markdown") == 0
    shown = capsys.readouterr().out
    assert words in shown and "Flags (not silently compared)" in shown
    assert words in diff_files(old, new, GateRules()).pairs[0].flags[0]


# ------------------------------------------------------------------------------------------ files and CLI


@pytest.mark.parametrize(("new_record", "code", "words"), [
    (make_record(), 0, "no regression"),
    (make_record(outcomes=[True] * 20 + [False] * 20), 1, "execution accuracy dropped"),
    (make_record(p50=1.0), 1, "latency p50 rose +100.0%"),
    (make_record(per_1k=0.2), 1, "eval cost per 1K requests rose +100.0%"),
    (make_record(train=2.0), 1, "train cost rose +100.0%"),
])
def test_exit_code_says_whether_anything_regressed(tmp_path, capsys, new_record, code, words):
    old = write_run(tmp_path / "old.json", make_record())
    new = write_run(tmp_path / "new.json", new_record)
    assert cli(old, new) == code
    assert words in capsys.readouterr().out


def test_pairs_in_one_run_only_are_added_or_removed(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record(), make_record(task="viggo"))
    new = write_run(tmp_path / "new.json", make_record(), make_record(model="gpt-4o-mini-ft"))
    result = diff_files(old, new, GateRules())
    assert result.added == (("spider", "gpt-4o-mini-ft"),)
    assert result.removed == (("viggo", "smollm2-135m-lora"),)
    assert cli(old, new, "--format", "json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["added"] == [{"task": "spider", "model": "gpt-4o-mini-ft"}]
    assert shown["removed"] == [{"task": "viggo", "model": "smollm2-135m-lora"}]


def test_json_output_has_stable_keys(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record())
    new = write_run(tmp_path / "new.json", make_record(p50=0.1, outcomes=[False] * 40))
    assert cli(old, new, "--format", "json") == 1
    shown = json.loads(capsys.readouterr().out)
    assert set(shown) == {"format", "verdict", "exit_code", "old", "new", "rules", "pairs", "added", "removed",
                          "errors", "regressions", "flags"}
    pair = shown["pairs"][0]
    assert set(pair) == {"task", "model", "metric", "status", "metrics", "latency_s", "cost_usd",
                         "error_rate", "errors", "regressions", "flags"}
    assert [m["name"] for m in pair["metrics"]] == ["execution", "exact"]
    assert set(pair["metrics"][0]["paired"]) == {"shared", "old_better", "new_better", "old_mean", "new_mean",
                                                 "p_value", "drop_points"}
    assert shown["verdict"] == "regression" and shown["exit_code"] == 1


def test_markdown_has_a_verdict_header_one_table_then_lists(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record())
    new = write_run(tmp_path / "new.json", make_record(p50=1.0, machine__hardware="NVIDIA H100"))
    assert cli(old, new, "--format", "markdown") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("### ❌ ftbench diff: 1 regression(s)")
    assert sum(line.startswith("|---") for line in lines) == 1
    assert "**Regressions:**" in lines and "**Flags (not silently compared):**" in lines


def test_output_file_is_written_and_never_an_input(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record())
    new = write_run(tmp_path / "new.json", make_record())
    before = new.read_bytes()
    assert cli(old, new, "--output", new) == 2
    assert "refusing to write" in capsys.readouterr().err and new.read_bytes() == before
    assert cli(old, new, "--output", tmp_path / "sub" / ".." / "old.json") == 2
    assert cli(old, new, "--output", tmp_path / "diff.md", "--format", "markdown") == 0
    assert (tmp_path / "diff.md").read_text().startswith("### ✅ ftbench diff: no regression")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["diff.md", "new.json", "old.json"]  # no temp file left


@pytest.mark.parametrize(("content", "words"), [
    ("this is not json {", "not JSON"),
    (json.dumps({"machine_info": {}, "results": []}), "not pytest-benchmark JSON"),
    (json.dumps([1, 2, 3]), "not pytest-benchmark JSON"),
    (json.dumps(benchmark_document([make_record(schema=99)])), "record schema 99, but this ftbench reads schemas 1, 2"),
    (json.dumps(benchmark_document([])), "none of its 0 benchmarks carries an ftbench record"),
    (json.dumps(benchmark_document([make_record(), make_record()])), "recorded twice"),
])
def test_unusable_input_exits_2_naming_the_file(tmp_path, capsys, content, words):
    good = write_run(tmp_path / "good.json", make_record())
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert cli(good, bad) == 2
    message = capsys.readouterr().err
    assert str(bad) in message and words in message
    with pytest.raises(DiffInputError, match=words):
        load_records(bad)


def test_missing_file_exits_2(tmp_path, capsys):
    good = write_run(tmp_path / "good.json", make_record())
    assert cli(tmp_path / "absent.json", good) == 2
    assert "absent.json: cannot read it" in capsys.readouterr().err


def test_no_pair_in_common_exits_2(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record(task="spider"))
    new = write_run(tmp_path / "new.json", make_record(task="viggo"))
    assert cli(old, new) == 2
    assert "no (task, model) pair in common" in capsys.readouterr().err


def test_diff_input_error_is_a_config_error():
    assert issubclass(DiffInputError, ConfigError)


def test_load_records_keys_by_task_and_model(tmp_path):
    run = write_run(tmp_path / "run.json", make_record(), make_record(task="viggo", model="base"))
    assert sorted(load_records(run)) == [("spider", "smollm2-135m-lora"), ("viggo", "base")]


def test_format_row_is_one_line_naming_the_pair_and_the_regression():
    pair = diff_records(make_record(), make_record(p50=1.0, machine__hardware="gpu"), GateRules())
    row = format_row(pair)
    assert "\n" not in row
    assert row.startswith("spider / smollm2-135m-lora: execution 75.0% -> 75.0%")
    assert "REGRESSION: latency p50 rose +100.0%" in row and "flags: hardware" in row


def test_help_shows_defaults_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        diff.main(["--help"])
    shown = capsys.readouterr().out
    for words in ("(default: 0.05)", "(default: 2.0)", "(default: 25.0)", "(default: 10.0)",
                  "0  no regression", "1  at least one regression", "2  unusable input"):
        assert words in shown


def outage(record: dict, failed: int) -> dict:
    """The record of a run in which the first `failed` items got no answer (as benchmarks.runner writes it)."""
    from benchmarks.record import error_summary

    ids = list(record["items"])[:failed]
    for item_id in ids:
        record["items"][item_id] = {"execution": None, "exact": None}
        record["predictions"][item_id] = None
    record["errors"] = error_summary({i: {"generate": "http 503 after 6 attempts: Service Unavailable"} for i in ids},
                                     record["data"]["n"])
    return record


def test_an_outage_is_errors_not_a_regression_and_exits_3(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record(schema=1))  # schema 1: written before errors existed
    new = write_run(tmp_path / "new.json", outage(make_record(outcomes=[False] * 40), failed=30))
    assert cli(old, new) == 3
    shown = capsys.readouterr().out
    assert "ERRORS in 1 of 1 pairs (not judged)" in shown and "30 items failed (75.0%)" in shown
    assert "http 503 after 6 attempts" in shown and "0.0% -> 75.0%" in shown
    pair = diff_files(old, new).pairs[0]
    assert pair.status == "errors" and pair.regressions == []


def test_errors_in_the_old_run_only_do_not_stop_the_gate(tmp_path):
    old = write_run(tmp_path / "old.json", outage(make_record(), failed=5))
    new = write_run(tmp_path / "new.json", make_record(outcomes=[False] * 40))
    result = diff_files(old, new)
    assert result.exit_code == 1 and result.pairs[0].error_rate.old == 5 / 40


def test_markdown_names_the_errors(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record())
    new = write_run(tmp_path / "new.json", outage(make_record(), failed=1))
    assert cli(old, new, "--format", "markdown") == 3
    shown = capsys.readouterr().out
    assert shown.startswith("### ⚠️ ftbench diff: ERRORS") and "**Errors (not judged" in shown
