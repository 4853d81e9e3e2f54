"""The typed result record (`benchmarks.record.Record`): exact JSON round trips of committed and generated records,
schema 1, refusals that name the field and value, and immutability."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.record import (SCHEMA, CostSummary, MetricSummary, Record, RecordError, Training, error_summary,
                               first_errors, latency_summary, nonfinite_to_null, summarize_metric)
from models.base import Completion

BASELINES = sorted((Path(__file__).parent.parent / "fixtures" / "baselines").glob("*.json"))


def committed_records() -> list[dict]:
    """The ftbench records (`extra_info` with "schema") of every committed pytest-benchmark file."""
    documents = [json.loads(path.read_text()) for path in BASELINES]
    return [b["extra_info"] for d in documents for b in d.get("benchmarks", []) if "schema" in b.get("extra_info", {})]


def schema_1_record(**changes) -> dict:
    """A schema-1 record as an old runner or a hand-made test wrote it: no errors, requests or accuracy_basis, and
    sections missing keys (no data.path, machine without versions, a graded metric without `correct`)."""
    record = {
        "schema": 1, "task": "viggo", "model": "smollm2-135m",
        "data": {"source": "fixtures", "split": "val", "n": 3, "fingerprint": "sha256:" + "a" * 32},
        "model_fingerprint": {"base": "HuggingFaceTB/SmolLM2-135M-Instruct", "adapter": None, "recipe": None},
        "metric": "mr_exact", "accuracy": 1 / 3, "ci95": [0.06, 0.79],
        "metrics": {"mr_exact": summarize_metric([True, False, False]), "slot_f1": summarize_metric([1.0, 0.5, 0.0])},
        "items": {"val/0": {"mr_exact": True, "slot_f1": 1.0}, "val/1": {"mr_exact": False, "slot_f1": 0.5},
                  "val/2": {"mr_exact": False, "slot_f1": 0.0}},
        "predictions": {"val/0": "inform(name[x])", "val/1": "inform()", "val/2": ""},
        "reasons": {"val/1": {"mr_exact": "slots differ"}},
        "latency_s": {"p50": 0.4, "p95": 0.9, "mean": 0.5, "total": 1.5, "source": "generated",
                      "generated_items": 3, "cached_items": 0},
        "throughput": {"examples_per_s": 2.0, "completion_tokens_per_s": 40.0},
        "tokens": {"prompt": 300, "completion": 60},
        "cost_usd": {"train": 0.0, "eval": 0.0001, "per_1k_requests": 0.033, "prices_date": "2025-06-01",
                     "pricing": {"gpu_hour": 0.475}},
        "training": {"wall_s": 39.0, "steps": 20, "hardware": "cpu"},
        "machine": {"hardware": "cpu: 2 cores"},
        "threshold": {"value": 0.0, "file": "fixtures/thresholds.toml", "key": "viggo.fixtures.smollm2-135m"},
    }
    return record | changes


def assert_round_trip(data: dict) -> Record:
    """Read and written again: equal, in the same key order, strict JSON, and a fresh copy."""
    record = Record.from_json(data)
    written = record.to_json()
    assert written == data
    assert json.dumps(written, allow_nan=False) == json.dumps(data)  # same keys in the same order, no NaN
    assert written is not data and Record.from_json(written) == record
    return record


# ------------------------------------------------------------------------------------------ round trips


def test_the_committed_baselines_hold_records():
    assert len(committed_records()) >= 8  # two files of four pairs; a path change must not empty this test


@pytest.mark.parametrize("data", committed_records(), ids=lambda r: f"{r['schema']}-{r['task']}-{r['model']}")
def test_every_committed_record_round_trips_and_reads_typed(data):
    record = assert_round_trip(data)
    assert record.pair == (data["task"], data["model"]) and record.schema == data["schema"]
    assert record.headline == data["metric"] and record.accuracy == data["accuracy"]
    assert record.headline_metric.n == data["metrics"][data["metric"]]["n"] == record.data.n
    assert record.ci95 == tuple(data["ci95"])
    first = next(iter(data["items"]))
    assert record.outcome(first, data["metric"]) is data["items"][first][data["metric"]]
    assert record.latency.p50 == data["latency_s"]["p50"] and record.cost.eval == data["cost_usd"]["eval"]
    assert record.machine.hardware == data["machine"]["hardware"]
    assert (record.training is None) == (data["training"] is None)


def test_a_schema_1_record_reads_as_a_run_without_errors_and_writes_back_as_it_was():
    data = schema_1_record()
    record = assert_round_trip(data)
    assert record.errors.count == 0 and record.errors.rate == 0.0 and record.errors.first_errors() == ""
    assert record.metric("mr_exact").errors == 0 and record.requests is None and record.accuracy_basis is None
    assert record.metric("slot_f1").correct is None and record.data.path is None and record.machine.torch is None
    assert "errors" not in record.to_json() and "correct" not in record.to_json()["metrics"]["slot_f1"]
    assert record.training.wall_s == 39.0 and record.training["hardware"] == "cpu" and not record.training.cached


def test_the_python_of_docs_records_md_runs(monkeypatch):
    """The typed way to read a record, as docs/records.md shows it, holds for the committed baseline."""
    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)  # the example names the baseline from the repository root
    blocks = re.findall(r"```python\n(.*?)```", (root / "docs" / "records.md").read_text(), re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, "docs/records.md", "exec"), {})


def test_keys_of_a_newer_writer_are_kept():
    data = schema_1_record(schema=2, gpu_memory_gb=12.5)
    data["latency_s"] = data["latency_s"] | {"p99": 1.2}
    data["metrics"]["mr_exact"] = data["metrics"]["mr_exact"] | {"kappa": 0.4}
    record = assert_round_trip(data)
    assert record.extra["gpu_memory_gb"] == 12.5 and record.latency.extra["p99"] == 1.2
    assert record.metric("mr_exact").extra["kappa"] == 0.4


def test_nulls_a_reader_accepts_round_trip_and_read_as_not_measured():
    data = schema_1_record(schema=2, machine=None, latency_s=None, training=None, accuracy=None, ci95=None)
    record = assert_round_trip(data)
    assert record.machine.hardware is None and record.latency.p50 is None and record.training is None


def test_accessors_of_the_readers():
    data = schema_1_record()
    del data["metrics"]["mr_exact"]["value"]  # hand-made: the headline's value only in `accuracy`
    record = Record.from_json(data)
    assert record.metric_value("mr_exact") == pytest.approx(1 / 3)
    assert record.metric_value("slot_f1") == 0.5 and record.metric_value("nothing") is None
    assert record.metric("nothing") == MetricSummary() and record.metric("nothing").value is None
    assert record.outcome("val/9", "mr_exact") is None and record.outcome("val/1", "slot_f1") == 0.5
    failed = error_summary({"val/1": {"generate": "http 503 after 6 attempts: Service Unavailable"}}, 3)
    errors = Record.from_json(data | {"schema": 2, "errors": failed}).errors
    assert errors.count == 1 and errors.by_reason == failed["by_reason"]
    assert errors.first_errors() == first_errors(failed) == "val/1 generate: http 503 after 6 attempts: Service Unavailable"


def test_a_record_built_in_python_writes_what_the_runner_writes():
    metrics = {"execution": summarize_metric([True, False, None]) | {"errors": 1}}
    record = Record(task="spider", model="m", data={"source": "fixtures", "path": None, "split": "val", "n": 3},
                    headline="execution", accuracy=0.5, metrics=metrics, training={"wall_s": 3.0, "cached": True},
                    cost=CostSummary(train=0.0, eval=0.002))
    written = record.to_json()
    assert list(written)[:6] == ["schema", "task", "model", "data", "model_fingerprint", "metric"]
    assert "threshold" not in written and "nonfinite_fields" not in written  # written only when set, as the runner does
    assert written["metrics"] == metrics and written["schema"] == SCHEMA and written["cost_usd"]["eval"] == 0.002
    assert isinstance(record.training, Training) and record.training.cached
    assert Record.from_json(written) == record
    with_threshold = dataclasses.replace(record, threshold={"value": 0.2, "file": "t.toml", "key": "spider.m"})
    assert with_threshold.to_json()["threshold"] == {"value": 0.2, "file": "t.toml", "key": "spider.m"}


# -------------------------------------------------------------------------------- generated records


ITEM_IDS = st.lists(st.integers(0, 9999), unique=True, max_size=6).map(lambda ns: [f"val/{n:04d}" for n in ns])
TEXT = st.text(max_size=8)
SECONDS = st.floats(0, 1e4, allow_nan=False)
REASONS = st.sampled_from(["http 503 after 6 attempts: Service Unavailable", "timeout after 60 s x 6",
                           "scorer error: RecursionError: deep"])
UNKNOWN = st.dictionaries(st.from_regex(r"x_[a-z]{1,4}", fullmatch=True),
                          st.none() | st.booleans() | st.integers(0, 10**6) | TEXT, max_size=2)
FREE_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False,
                         allow_infinity=False) | TEXT,
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                         max_leaves=8)


@st.composite
def records(draw) -> dict:
    """A record as `runner.build_record` writes it, from the runner's own helpers; schema 1 or 2, with nulls where
    the runner writes them and keys of a newer writer here and there."""
    ids = draw(ITEM_IDS)
    failed = {i: {"generate": draw(REASONS)} for i in draw(st.sets(st.sampled_from(ids)))} if ids else {}
    items = {i: {"execution": None if i in failed else draw(st.none() | st.booleans()),
                 "slot_f1": None if i in failed else draw(st.floats(0, 1))} for i in ids}
    metrics = {m: summarize_metric([o[m] for o in items.values()]) | {"errors": len(failed)}
               for m in ("execution", "slot_f1")}
    completions = [Completion(text="x", latency_s=draw(SECONDS), cached=draw(st.booleans()),
                              error=failed.get(i, {}).get("generate")) for i in ids]
    n, wall_s = len(ids), draw(st.floats(1e-3, 1e4))
    record = {
        "schema": 2, "task": draw(st.sampled_from(["spider", "viggo"])), "model": draw(TEXT.filter(bool)),
        "data": {"source": draw(st.sampled_from(["fixtures", "hub", "dir"])), "path": draw(st.none() | TEXT),
                 "split": "val", "n": n, "fingerprint": "sha256:" + "c" * 32},
        "model_fingerprint": draw(st.dictionaries(TEXT, FREE_JSON, max_size=3)),
        "metric": "execution", "accuracy": metrics["execution"]["value"],
        "accuracy_basis": draw(TEXT), "ci95": metrics["execution"]["ci95"], "metrics": metrics, "items": items,
        "predictions": {i: None if i in failed else draw(TEXT) for i in ids},
        "reasons": {i: {"execution": draw(TEXT)} for i in ids if i not in failed and draw(st.booleans())},
        "errors": error_summary(failed, n),
        "requests": draw(st.none() | st.fixed_dictionaries({"endpoint": TEXT, "timeout_s": SECONDS})),
        "latency_s": latency_summary(completions, wall_s),
        "throughput": {"examples_per_s": n / wall_s if wall_s else None, "completion_tokens_per_s": None},
        "tokens": {"prompt": draw(st.integers(0, 10**9)), "completion": draw(st.integers(0, 10**9))},
        "cost_usd": {"train": draw(SECONDS), "eval": draw(st.none() | SECONDS), "per_1k_requests": None,
                     "prices_date": "2025-06-01", "pricing": draw(st.dictionaries(TEXT, FREE_JSON, max_size=3))},
        "training": draw(st.none() | st.dictionaries(st.sampled_from(["loss_curve", "key", "base"]), FREE_JSON)
                         .map(lambda t: t | {"wall_s": 39.5, "cached": False})),
        "machine": {"hardware": "cpu", "hardware_key": "cpu", "platform": "linux", "python": "3.11.7",
                    "torch": "2.13.0", "transformers": "5.0", "precision_auto": "fp32", "precision_reason": "no bf16"},
    }
    if draw(st.booleans()):
        record["threshold"] = {"value": draw(st.floats(0, 1)), "file": "fixtures/thresholds.toml", "key": "k"}
    if draw(st.booleans()):  # schema 1: written before errors, requests and the accuracy basis
        record = {k: v for k, v in record.items() if k not in ("errors", "requests", "accuracy_basis")} | {"schema": 1}
    for section in draw(st.sets(st.sampled_from(["data", "latency_s", "cost_usd", "machine"]))):
        record[section] = record[section] | draw(UNKNOWN)
    return record | draw(UNKNOWN)


@settings(deadline=None, max_examples=150)
@given(records())
def test_generated_records_round_trip_exactly_as_strict_json(data):
    record = assert_round_trip(data)
    assert record.errors.count == len(data.get("errors", {}).get("items", {}))
    for item_id, outcomes in data["items"].items():
        assert record.outcome(item_id, "execution") is outcomes["execution"]


# ------------------------------------------------------------------------------------------------ refusals


def _set(data: dict, path: str, value) -> dict:
    *parents, leaf = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is _DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "words"), [
    ("data", _DELETE, "data is missing"),
    ("metrics", _DELETE, "metrics is missing"),
    ("accuracy", float("nan"), "accuracy = NaN is not a finite number"),
    ("latency_s.p50", float("inf"), "latency_s.p50 = Infinity is not a finite number"),
    ("latency_s", [0.5], "latency_s = [0.5] is not an object"),
    ("metrics", None, "metrics = null is not an object"),
    ("metrics.mr_exact.n", 2.5, "metrics.mr_exact.n = 2.5 is not a whole number"),
    ("items.val/1", None, "items.val/1 = null is not an object"),
    ("predictions.val/1", 7, "predictions.val/1 = 7 is not a string"),
    ("tokens.prompt", "300", 'tokens.prompt = "300" is not a number'),
    ("training.cached", "yes", 'training.cached = "yes" is not true or false'),
    ("machine.torch", 2, "machine.torch = 2 is not a string"),
    ("schema", 3, "schema = 3 is not a schema this ftbench reads (1, 2)"),
    ("task", "", 'task = "" is required (a non-empty string)'),
])
def test_a_bad_record_is_refused_naming_the_field_and_value(path, value, words):
    with pytest.raises(RecordError) as raised:
        Record.from_json(_set(schema_1_record(), path, value))
    assert words in raised.value.problems and words in str(raised.value)
    assert isinstance(raised.value, ValueError)


FIELDS = ["data", "data.n", "data.path", "metric", "accuracy", "accuracy_basis", "ci95", "metrics", "metrics.mr_exact",
          "metrics.mr_exact.ci95", "items", "items.val/0", "items.val/0.slot_f1", "predictions", "reasons",
          "reasons.val/1", "errors", "requests", "latency_s", "latency_s.source", "throughput", "tokens", "cost_usd",
          "cost_usd.pricing", "training", "training.cached", "machine", "threshold", "model_fingerprint"]


@settings(deadline=None, max_examples=200)
@given(st.sampled_from(FIELDS), FREE_JSON)
def test_any_value_in_any_field_gives_a_record_or_a_record_error_naming_it(path, value):
    """What the diff and report need: no other exception, and a record read is one that round-trips."""
    data = _set(schema_1_record(), path, value)
    try:
        record = Record.from_json(data)
    except RecordError as err:
        assert any(problem.startswith(path) for problem in err.problems), err.problems
    else:
        assert record.to_json() == data


def test_not_an_object_is_refused():
    with pytest.raises(RecordError, match=r"the record = \[\] is not an object"):
        Record.from_json([])


def test_a_field_the_runner_nulled_is_refused_but_the_runner_can_still_hold_its_record():
    data, nulled = nonfinite_to_null(schema_1_record(schema=2, latency_s={"p50": float("nan")}))
    data["nonfinite_fields"] = nulled
    with pytest.raises(RecordError, match="latency_s.p50 was NaN or infinite when the run computed it"):
        Record.from_json(data)
    assert Record.from_json(data, check=False).to_json() == data


def test_a_record_broken_everywhere_lists_the_first_problems_and_counts_the_rest():
    data = schema_1_record()
    data["items"] = {f"val/{i}": {"mr_exact": float("nan")} for i in range(30)}
    with pytest.raises(RecordError) as raised:
        Record.from_json(data)
    assert len(raised.value.problems) == 30 and "... and 10 more" in str(raised.value)


# ------------------------------------------------------------------------------------------- immutability


def test_a_record_cannot_be_changed_by_accident():
    source = schema_1_record()
    record = Record.from_json(source)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.accuracy = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.latency.p50 = 0.0
    for mapping, key in ((record.metrics, "x"), (record.items["val/0"], "mr_exact"), (record.predictions, "val/0"),
                         (record.cost.pricing, "gpu_hour"), (record.model_fingerprint, "base"), (record.extra, "x"),
                         (record.errors.by_reason, "x")):
        with pytest.raises(TypeError):
            mapping[key] = "changed"
    with pytest.raises(TypeError):
        record.training.values["wall_s"] = 0.0
    assert isinstance(record.ci95, tuple)
    source["items"]["val/0"]["mr_exact"] = False  # the JSON it was read from changes: the record does not
    written = record.to_json()
    written["metrics"]["mr_exact"]["value"] = 0.9  # nor when what it wrote is changed
    assert record.outcome("val/0", "mr_exact") is True and record.to_json()["metrics"]["mr_exact"]["value"] != 0.9
