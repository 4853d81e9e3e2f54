"""`ftbench diff`: diffs of hand-made pytest-benchmark files (tests/run_files.py builds them)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import gate, runs
from benchmarks.cli import main as ftbench
from benchmarks.gate import GateRules, diff_files, format_row, paired_text
from benchmarks.record import Record
from benchmarks.runs import DiffInputError, load_records
from benchmarks.stats import mcnemar_exact
from models.errors import ConfigError
from tests.run_files import (BASELINES, benchmark_document, cli, diff, make_record, set_field, write_run,
                              write_runs)


# -------------------------------------------------------------------------------------------- paired test

no_deadline = settings(deadline=None)  # the first example imports scipy: slow once, not a flaky test


@no_deadline
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_paired_test_counts_the_discordant_items(pairs):
    old = make_record(outcomes=[o for o, _ in pairs])
    new = make_record(outcomes=[n for _, n in pairs])
    test = diff(old, new).headline.paired
    b, c = sum(o and not n for o, n in pairs), sum(n and not o for o, n in pairs)
    assert (test.shared, test.old_better, test.new_better) == (len(pairs), b, c)
    assert test.p_value == mcnemar_exact(b, c)


@no_deadline
@given(st.lists(st.booleans(), min_size=1, max_size=60))
def test_identical_outcomes_never_regress(outcomes):
    pair = diff(make_record(outcomes=outcomes), make_record(outcomes=outcomes))
    assert pair.headline.paired.p_value == 1.0
    assert pair.regressions == [] and pair.flags == []


def test_only_items_scored_in_both_runs_are_paired():
    old, new = make_record(outcomes=[True] * 10), make_record(outcomes=[False] * 10)
    new["items"]["val/0000"]["execution"] = None  # not scored in the new run
    del old["items"]["val/0009"]
    test = diff(old, new).headline.paired
    assert (test.shared, test.old_better, test.new_better) == (8, 8, 0)


# ----------------------------------------------------------------------------------------------- gating


def test_a_significant_large_accuracy_drop_regresses():
    pair = diff(make_record(outcomes=[True] * 60), make_record(outcomes=[True] * 50 + [False] * 10))
    assert pair.headline.paired.p_value == mcnemar_exact(10, 0) < 0.05
    assert len(pair.regressions) == 1 and "execution accuracy dropped 16.7 points" in pair.regressions[0]


def test_a_large_drop_that_is_not_significant_passes():
    pair = diff(make_record(outcomes=[True] * 10), make_record(outcomes=[True] * 8 + [False] * 2))
    assert pair.headline.paired.p_value > 0.05 and pair.regressions == []


def test_a_significant_drop_below_min_drop_passes_until_the_limit_is_lowered():
    old, new = make_record(outcomes=[True] * 2000), make_record(outcomes=[True] * 1970 + [False] * 30)
    assert diff(old, new, GateRules(min_drop=2.0)).regressions == []
    assert diff(old, new, GateRules(min_drop=1.0)).regressions


def test_an_accuracy_gain_never_regresses():
    pair = diff(make_record(outcomes=[False] * 40), make_record(outcomes=[True] * 40))
    assert pair.headline.paired.p_value < 1e-9 and pair.regressions == []


@pytest.mark.parametrize(("field", "old", "new", "regressed"), [
    ("p50", 0.5, 0.7, True), ("p50", 0.5, 0.6, False),
    ("per_1k", 0.10, 0.12, True), ("per_1k", 0.10, 0.105, False), ("per_1k", 0.0, 0.01, True),
    ("train", 1.0, 1.2, True), ("train", 1.0, 0.5, False),
])
def test_latency_and_cost_limits(field, old, new, regressed):
    pair = diff(make_record(**{field: old}), make_record(**{field: new}))
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
    old, new = write_runs(tmp_path, make_record(), make_record(**changes))
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
    old, new = write_runs(tmp_path, make_record(), new_record)
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
    old, new = write_runs(tmp_path, make_record(), make_record(p50=0.1, outcomes=[False] * 40))
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
    old, new = write_runs(tmp_path, make_record(), make_record(p50=1.0, machine__hardware="NVIDIA H100"))
    assert cli(old, new, "--format", "markdown") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("### ❌ ftbench diff: 1 regression(s)")
    assert sum(line.startswith("|---") for line in lines) == 1
    assert "**Regressions:**" in lines and "**Flags (not silently compared):**" in lines


def test_output_file_is_written_and_never_an_input(tmp_path, capsys):
    old, new = write_runs(tmp_path, make_record(), make_record())
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
    old, new = write_runs(tmp_path, make_record(task="spider"), make_record(task="viggo"))
    assert cli(old, new) == 2
    assert "no (task, model) pair in common" in capsys.readouterr().err


def test_diff_input_error_is_a_config_error():
    assert issubclass(DiffInputError, ConfigError)


def test_load_records_keys_typed_records_by_task_and_model(tmp_path):
    run = write_run(tmp_path / "run.json", make_record(), make_record(task="viggo", model="base"))
    records = load_records(run)
    assert sorted(records) == [("spider", "smollm2-135m-lora"), ("viggo", "base")]
    assert records["viggo", "base"] == Record.from_json(make_record(task="viggo", model="base"))


def test_the_committed_schema_1_baselines_load_and_diff():
    old, new = BASELINES / "seed-limit100-fp32.json", BASELINES / "seed-limit100-bf16.json"
    assert {record.schema for record in load_records(old).values()} == {1}
    result = diff_files(old, new)
    assert result.exit_code == 0 and [(p.task, p.model) for p in result.pairs] == sorted(load_records(new))
    lora = next(p for p in result.pairs if (p.task, p.model) == ("spider", "smollm2-135m-lora"))
    assert paired_text(lora.headline.paired) == "-5/+17 of 100, p=0.0169"
    assert lora.error_rate == gate.Change(0.0, 0.0) and lora.errors == []  # schema 1: a run without errors


def test_format_row_is_one_line_naming_the_pair_and_the_regression():
    pair = diff(make_record(), make_record(p50=1.0, machine__hardware="gpu"))
    row = format_row(pair)
    assert "\n" not in row
    assert row.startswith("spider / smollm2-135m-lora: execution 75.0% -> 75.0%")
    assert "REGRESSION: latency p50 rose +100.0%" in row and "flags: hardware" in row


def test_help_shows_defaults_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        ftbench(["diff", "--help"])
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
    # the old run is schema 1: written before errors existed
    old, new = write_runs(tmp_path, make_record(schema=1), outage(make_record(outcomes=[False] * 40), failed=30))
    assert cli(old, new) == 3
    shown = capsys.readouterr().out
    assert "ERRORS in 1 of 1 pairs (not judged)" in shown and "30 items failed (75.0%)" in shown
    assert "{'http 503 after 6 attempts': 30}; first: val/0000 generate: http 503" in shown and "0.0% -> 75.0%" in shown
    pair = diff_files(old, new).pairs[0]
    assert pair.status == "errors" and pair.regressions == []


def test_errors_in_the_old_run_only_do_not_stop_the_gate(tmp_path):
    old, new = write_runs(tmp_path, outage(make_record(), failed=5), make_record(outcomes=[False] * 40))
    result = diff_files(old, new)
    assert result.exit_code == 1 and result.pairs[0].error_rate.old == 5 / 40


def test_markdown_names_the_errors(tmp_path, capsys):
    old, new = write_runs(tmp_path, make_record(), outage(make_record(), failed=1))
    assert cli(old, new, "--format", "markdown") == 3
    shown = capsys.readouterr().out
    assert shown.startswith("### ⚠️ ftbench diff: ERRORS") and "**Errors (not judged" in shown


# ------------------------------------------------------------------------- malformed records (issue 13)

PAIR = "spider / smollm2-135m-lora"
NON_FINITE = (float("nan"), float("inf"), float("-inf"))


def refused(tmp_path, capsys, new_record: dict, *options) -> str:
    """Diff a good old run against `new_record`: assert exit 2 with no output file; return the message."""
    old, new = write_runs(tmp_path, make_record(), new_record)
    assert cli(old, new, "--output", tmp_path / "diff.md", *options) == 2
    assert not (tmp_path / "diff.md").exists()
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err


def test_the_testers_non_finite_run_is_refused_listing_every_field(tmp_path, capsys):
    """Before: exit 0, status ok, no flag."""
    new = make_record(latency_s__p50=float("inf"), cost_usd__per_1k_requests=float("nan"),
                      cost_usd__train=float("-inf"), accuracy=float("nan"))
    message = refused(tmp_path, capsys, new)
    assert f"{tmp_path / 'new.json'}: 4 malformed value(s)" in message
    for line in ("latency_s.p50 = Infinity", "cost_usd.per_1k_requests = NaN", "cost_usd.train = -Infinity",
                 "accuracy = NaN"):
        assert f"{tmp_path / 'new.json'}: {PAIR}: {line} is not a finite number" in message, message


@pytest.mark.parametrize("path", ["latency_s.p50", "latency_s.p95", "latency_s.mean", "latency_s.total",
                                  "cost_usd.train", "cost_usd.eval", "cost_usd.per_1k_requests", "accuracy",
                                  "metrics.execution.value", "metrics.exact.value", "ci95[0]",
                                  "items.val/0003.execution", "throughput.examples_per_s", "tokens.prompt"])
def test_a_non_finite_number_is_refused_naming_file_pair_and_field(tmp_path, capsys, path):
    record = make_record()
    if path == "ci95[0]":  # set_field walks objects only
        record["ci95"][0] = float("nan")
    else:
        set_field(record, path, float("nan"))
    message = refused(tmp_path, capsys, record)
    assert f"new.json: {PAIR}: {path} = NaN is not a finite number" in message


def test_a_field_the_runner_nulled_as_non_finite_is_refused(tmp_path, capsys):
    """The runner writes null for a NaN it computed and lists it: as null it would pass the latency gate unseen."""
    from benchmarks.record import nonfinite_to_null

    record, nulled = nonfinite_to_null(make_record(latency_s__p50=float("nan")))
    message = refused(tmp_path, capsys, record | {"nonfinite_fields": nulled})
    assert f"new.json: {PAIR}: latency_s.p50 was NaN or infinite when the run computed it" in message


@pytest.mark.parametrize(("path", "value", "words"), [
    ("metrics", [1, 2], "metrics = [1, 2] is not an object"),
    ("latency_s", [0.5, 0.9], "latency_s = [0.5, 0.9] is not an object"),
    ("data", "fixtures", 'data = "fixtures" is not an object'),
    ("metrics.execution", "75%", 'metrics.execution = "75%" is not an object'),
    ("metrics.execution.n", 40.5, "metrics.execution.n = 40.5 is not a whole number"),
    ("metrics.execution.correct", 41, "metrics.execution.correct = 41 is more than metrics.execution.n = 40"),
    ("items", ["val/0000"], 'items = ["val/0000"] is not an object'),
    ("items.val/0001", True, "items.val/0001 = true is not an object"),
    ("items.val/0001.execution", "yes", 'items.val/0001.execution = "yes" is not a number'),
    ("items.val/0001.execution", 1.5, "items.val/0001.execution = 1.5 is above 1"),
    ("accuracy", True, "accuracy = true is not a number"),
    ("accuracy", "0.75", 'accuracy = "0.75" is not a number'),
    ("accuracy", 75, "accuracy = 75 is above 1"),
    ("ci95", [0.9, 0.1], "ci95 = [0.9, 0.1] has its low bound above its high bound"),
    ("ci95", 0.1, "ci95 = 0.1 is not a [low, high] pair"),
    ("cost_usd.train", -1.0, "cost_usd.train = -1.0 is negative"),
    ("latency_s.p50", {"s": 1}, 'latency_s.p50 = {"s": 1} is not a number'),
    ("data.n", -3, "data.n = -3 is negative"),
    ("data.fingerprint", 7, "data.fingerprint = 7 is not a string"),
    ("metric", ["execution"], 'metric = ["execution"] is not a string'),
    ("machine", "cpu", 'machine = "cpu" is not an object'),
    ("training", [], "training = [] is not an object"),
    ("schema", True, "schema = true is not a schema this ftbench reads (1, 2)"),
    ("errors", {"count": 1}, "errors.rate is missing"),
    ("errors", {"count": 1, "rate": 2.0, "by_reason": {}, "first": []}, "errors.rate = 2.0 is above 1"),
    ("errors", {"count": 1, "rate": 0.1, "by_reason": {"x": "1"}, "first": [{"id": "val/0001"}]},
     'errors.by_reason.x = "1" is not a number'),
    ("errors", {"count": 1, "rate": 0.1, "by_reason": {}, "first": [{"id": "val/0001"}]},
     "errors.first[0].stage is missing"),
])
def test_a_field_of_the_wrong_type_is_refused_naming_it(tmp_path, capsys, path, value, words):
    message = refused(tmp_path, capsys, set_field(make_record(), path, value))
    assert f"new.json: {PAIR}: {words}" in message, message


def test_a_record_without_a_section_every_writer_records_is_refused_naming_it(tmp_path, capsys):
    record = make_record()
    del record["machine"]
    assert f"new.json: {PAIR}: machine is missing" in refused(tmp_path, capsys, record)


def test_every_bad_record_of_a_file_is_listed_once(tmp_path, capsys):
    viggo = make_record(task="viggo", data="x")
    spider = make_record(latency_s__p50=float("inf"))
    new = write_run(tmp_path / "new.json", spider, viggo)
    old = write_run(tmp_path / "old.json", make_record(), make_record(task="viggo"))
    assert cli(old, new) == 2
    message = capsys.readouterr().err
    assert "new.json: 2 malformed value(s)" in message
    assert f"{PAIR}: latency_s.p50 = Infinity" in message and "viggo / smollm2-135m-lora: data = " in message


def test_a_record_without_a_pair_is_named_by_its_benchmark(tmp_path, capsys):
    message = refused(tmp_path, capsys, make_record(task=["spider"]))
    assert "test_accuracy.py::test_accuracy[['spider']-smollm2-135m-lora]: task = " in message
    assert 'task = ["spider"] is not a string' in message


def test_a_file_broken_everywhere_lists_the_first_problems_and_counts_the_rest(tmp_path, capsys):
    record = make_record()
    for outcomes in record["items"].values():
        outcomes["execution"] = outcomes["exact"] = float("nan")
    message = refused(tmp_path, capsys, record)
    assert "new.json: 80 malformed value(s)" in message and "... and 30 more" in message
    assert message.count("is not a finite number") == runs.LISTED_PROBLEMS


def test_the_old_run_is_checked_too(tmp_path, capsys):
    old, new = write_runs(tmp_path, make_record(schema=1, metrics__exact__value=float("inf")), make_record())
    assert cli(old, new) == 2
    assert f"{old}: {PAIR}: metrics.exact.value = Infinity is not a finite number" in capsys.readouterr().err


def test_json_nested_too_deeply_exits_2_naming_the_file(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record())
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert cli(old, deep, "--output", tmp_path / "diff.md") == 2
    assert f"{deep}: JSON nested too deeply to read" in capsys.readouterr().err
    assert not (tmp_path / "diff.md").exists()


def test_a_record_nested_deeper_than_any_real_one_is_refused(tmp_path, capsys):
    nested: object = "sha256:" + "b" * 64
    for _ in range(500):  # under json's own limit, over what the fingerprint diff may recurse through
        nested = {"adapter": nested}
    message = refused(tmp_path, capsys, make_record(model_fingerprint=nested))
    assert f"{PAIR}: model_fingerprint.adapter" in message and "nested more than 64 levels deep" in message


def test_an_integer_too_long_to_read_exits_2(tmp_path, capsys):
    old = write_run(tmp_path / "old.json", make_record())
    new = tmp_path / "new.json"
    new.write_text(json.dumps(benchmark_document([make_record()])).replace('"n": 40', '"n": ' + "9" * 5000, 1))
    assert cli(old, new) == 2
    assert f"{new}: not readable JSON" in capsys.readouterr().err


def test_an_integer_beyond_float_range_is_not_finite(tmp_path, capsys):
    message = refused(tmp_path, capsys, make_record(tokens__prompt=10**400))
    assert f"{PAIR}: tokens.prompt = an integer too large for a float is not a finite number" in message


def test_nulls_the_runner_writes_for_unmeasured_values_are_fine(tmp_path):
    """Every item failed: no latency percentile, no per-1K cost, no value or interval; still readable (exit 3)."""
    record = outage(make_record(outcomes=[True] * 5), failed=5)
    record |= {"accuracy": None, "ci95": None, "training": None, "machine": None}
    record["latency_s"] |= {"p50": None, "p95": None, "mean": None}
    record["cost_usd"]["per_1k_requests"] = None
    record["metrics"]["execution"] = {"value": None, "n": 0, "ci95": None, "errors": 5}
    assert diff_files(*write_runs(tmp_path, make_record(outcomes=[True] * 5), record)).exit_code == gate.EXIT_ERRORS


@pytest.mark.parametrize(("side", "field", "words"), [
    ("new", "data", "the new run evaluated no item (data.n = 0)"),
    ("new", "metric", "the new run scored no item on execution (metrics.execution.n = 0)"),
    ("old", "data", "the old run evaluated no item (data.n = 0)"),
])
def test_a_pair_with_n_0_is_errors_never_a_pass(tmp_path, capsys, side, field, words):
    """Before: a run on an empty eval set passed against a good baseline (only flagged)."""
    empty = make_record()
    empty["metrics"]["execution"] |= {"n": 0, "correct": 0, "value": None, "ci95": None}  # what the runner writes
    empty |= {"accuracy": None, "ci95": None}
    if field == "data":
        empty |= {"items": {}, "predictions": {}}
        empty["data"]["n"] = empty["metrics"]["exact"]["n"] = empty["metrics"]["exact"]["correct"] = 0
    runs = {"old": make_record(), "new": make_record()} | {side: empty}
    old, new = write_runs(tmp_path, runs["old"], runs["new"])
    assert cli(old, new) == gate.EXIT_ERRORS == 3
    shown = capsys.readouterr().out
    assert "ERRORS in 1 of 1 pairs (not judged)" in shown and f"{PAIR}: {words}" in shown
    assert diff_files(old, new).pairs[0].regressions == []


def test_a_rise_beyond_float_range_regresses_without_printing_inf(tmp_path):
    old = make_record(latency_s__p50=5e-324)  # the smallest float: 1 s is 2e323 x
    pair = diff_files(*write_runs(tmp_path, old, make_record(p50=1.0))).pairs[0]
    assert pair.latency_p50.percent is None and "latency p50 rose beyond float range" in pair.regressions[0]
    assert "inf" not in format_row(pair)


def diff_in_folder(good: dict, bad: dict, bad_is_new: bool, *options) -> tuple[int, str, str, Path]:
    """(exit code, stdout, stderr, the bad file's path) of a diff in a fresh folder: hypothesis runs many examples
    in one test, so pytest's per-test tmp_path and capsys do not fit."""
    with tempfile.TemporaryDirectory() as folder:
        old, new = write_runs(Path(folder), *((good, bad) if bad_is_new else (bad, good)))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = cli(old, new, *options)
    return code, out.getvalue(), err.getvalue(), new if bad_is_new else old


# the numeric fields of make_record's record that diff or report read, and some they only carry
NUMERIC_FIELDS = ["accuracy", "latency_s.p50", "latency_s.p95", "latency_s.mean", "latency_s.total", "cost_usd.train",
                  "cost_usd.eval", "cost_usd.per_1k_requests", "data.n", "metrics.execution.value",
                  "metrics.execution.n", "metrics.execution.correct", "metrics.exact.value", "metrics.exact.n",
                  "items.val/0000.execution", "items.val/0039.exact", "throughput.examples_per_s", "tokens.completion",
                  "training.wall_s", "model_fingerprint.recipe.r", "cost_usd.pricing.gpu_hour"]


@settings(deadline=None, max_examples=60)
@given(st.sampled_from(NUMERIC_FIELDS), st.sampled_from(NON_FINITE), st.booleans(), st.sampled_from([1, 2]))
def test_any_non_finite_number_is_refused_naming_its_field(path, value, in_new, schema):
    code, _, err, bad = diff_in_folder(make_record(), set_field(make_record(schema=schema), path, value), in_new)
    assert code == 2
    assert f"{bad}: {PAIR}: {path} = {json.dumps(value)} is not a finite number" in err


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**20) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
READ_FIELDS = ["metric", "accuracy", "ci95", "metrics", "metrics.execution", "metrics.execution.value",
               "metrics.execution.n", "metrics.execution.ci95", "items", "items.val/0001",
               "items.val/0001.execution", "latency_s", "latency_s.p50", "cost_usd", "cost_usd.per_1k_requests",
               "cost_usd.prices_date", "data", "data.n", "data.fingerprint", "machine", "machine.hardware",
               "training", "model_fingerprint", "errors"]


@settings(deadline=None, max_examples=80)
@given(st.sampled_from(READ_FIELDS), json_values)
def test_any_value_in_any_field_gives_an_exit_code_never_a_traceback(path, value):
    """Whatever a field holds, diff answers 0-3; on 2 the message names the field it refused."""
    new_record = set_field(make_record(), path, value)
    code, out, err, new = diff_in_folder(make_record(), new_record, True, "--format", "markdown")
    assert code in (0, 1, 2, 3) and "Traceback" not in err
    if code == 2:
        assert f"{new}: {PAIR}: {path}" in err
    else:
        assert not re.search(r"(?i)\b(nan|-?inf)\b|nan%|inf%", out)
