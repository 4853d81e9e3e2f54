"""The prepared device check, kept working on a CPU: its tiny run end to end, and what it writes when a step fails,
runs out of time or meets a number that is not finite."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.perf import gpu_check, seed_shape
from benchmarks.perf.gpu_check import Budget, Context, Step
from benchmarks.perf.seed_shape import SEED_LAYERS, SEED_TOKENS, TINY_SHAPE, Skipped
from models.pricing import load_prices

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = {"passed", "failed", "skipped"}


def strict_json(path: Path):
    """The file's JSON, refusing NaN and infinities (Python's json would accept them)."""
    def refuse(constant):
        raise ValueError(f"{path} holds {constant}: not strict JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run([sys.executable, "-m", "benchmarks.perf.gpu_check", "--device", "cpu", "--tiny", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return done, strict_json(out / "gpu_check.json"), (out / "gpu_check.md").read_text()


def test_the_tiny_cpu_run_gives_every_step_an_honest_outcome(tiny_run):
    done, result, _ = tiny_run
    assert done.returncode == 0, done.stderr[-3000:]
    steps = result["steps"]
    assert list(steps) == ["A", "B", "C"]
    assert all(s["outcome"] in OUTCOMES and s["reason"] for s in steps.values())
    assert steps["A"]["outcome"] == "skipped" and steps["A"]["reason"].startswith("no CUDA")
    assert steps["A"]["tests"] and all(t["outcome"] == "skipped" for t in steps["A"]["tests"])  # collected, not run
    assert [o["file"] for o in steps["A"]["left_out"]] == ["tests/test_vllm.py"]
    assert steps["B"]["outcome"] == steps["C"]["outcome"] == "passed"


def test_step_a_selects_the_cuda_variants_and_leaves_the_cpu_ones_to_the_unit_suite(tiny_run):
    _, result, _ = tiny_run
    selected = {t["test"] for t in result["steps"]["A"]["tests"]}
    for test in ("tests.test_decoding::test_tiny_random_outputs_identical_in_every_mode[cuda-{}-spider]",
                 "tests.test_lora_resume::test_resumed_run_ends_with_the_clean_runs_adapter[cuda-{}]",
                 "tests.test_prediction_cache::test_the_same_weights_on_another_device_or_in_another_precision_miss"
                 "[cuda-{}]"):
        assert {test.format(precision) for precision in ("fp32", "bf16", "fp16")} <= selected, test
    assert not [t for t in selected if "cpu-" in t or "[auto]" in t or "smollm2" in t]


def test_measured_numbers_are_finite_and_positive(tiny_run):
    _, result, _ = tiny_run
    training, decoding = result["steps"]["B"], result["steps"]["C"]
    micro_batch = training["micro_batch"]["sequences"] * training["micro_batch"]["tokens"]
    measured = [r for r in training["runs"] if r["outcome"] == "measured"]
    assert {r["layers"] for r in measured} == set(TINY_SHAPE.depths)
    for run in measured:
        for name in ("seconds_per_step", "tokens_per_s", "peak_memory_gib"):
            assert math.isfinite(run[name]) and run[name] > 0, (name, run)
        assert run["tokens_per_s"] == pytest.approx(micro_batch / run["seconds_per_step"])
    for name in ("ftbench", "transformers"):
        timing = decoding[name]
        assert timing["generated_tokens"] > 0 and timing["seconds"] > 0
        assert timing["tokens_per_s"] == pytest.approx(timing["generated_tokens"] / timing["seconds"])
    assert 0 <= decoding["same_answers"] <= decoding["prompts"]


def test_the_projection_is_the_measurements_carried_to_48_layers_and_priced(tiny_run):
    _, result, _ = tiny_run
    training = result["steps"]["B"]
    micro_batch = training["micro_batch"]["sequences"] * training["micro_batch"]["tokens"]
    prices = load_prices()
    assert {p["gradient_checkpointing"] for p in training["projections"]} == {True, False}
    for projection in training["projections"]:
        runs = [r for r in training["runs"]
                if r["outcome"] == "measured" and r["gradient_checkpointing"] == projection["gradient_checkpointing"]]
        per_step, basis = seed_shape.project([(r["layers"], r["seconds_per_step"]) for r in runs])
        assert projection["basis"] == basis and basis.startswith("projected")  # tiny never measures 48 layers
        assert projection["tokens_per_s"] == pytest.approx(micro_batch / per_step)
        assert projection["seed_tokens"] == SEED_TOKENS == 400 * 128 * 512
        assert projection["projected_hours"] == pytest.approx(SEED_TOKENS / projection["tokens_per_s"] / 3600)
        assert projection["price_key"] == "cpu" and projection["hourly_usd"] == prices.hourly_rate("cpu")
        hours, rate = projection["projected_hours"], projection["hourly_usd"]
        assert projection["projected_cost_usd"] == pytest.approx(hours * rate)
        assert projection["seed"] == {"hardware": "a40", "hours": 7.0, "cost_usd": 3.32,
                                      "hourly_usd": prices.hourly_rate("a40")}
    assert training["headline"] in training["projections"]


def test_the_markdown_names_every_step_and_its_outcome(tiny_run):
    _, result, summary = tiny_run
    for key, step in result["steps"].items():
        assert f"| {key}: {step['title']} | {step['outcome']} |" in summary
    assert "## B:" in summary and "projection" in summary and "seed (SEED.md)" in summary
    assert "## C:" in summary and result["shape"] in summary


def context(tmp_path: Path, seconds: float = 300) -> Context:
    return Context("cpu", TINY_SHAPE, Budget(seconds), tmp_path / "out")


def test_a_failing_step_still_leaves_both_files_with_that_step_failed(tmp_path):
    def broken(_: Context):
        raise RuntimeError("injected failure")

    def not_applicable(_: Context):
        raise Skipped("nothing to do here")

    steps = [Step("A", "first", lambda _: {"reason": "fine"}), Step("B", "second", broken),
             Step("C", "third", not_applicable)]
    result = gpu_check.run_check(context(tmp_path), steps, command="injected")
    written = strict_json(tmp_path / "out" / "gpu_check.json")
    assert written == json.loads(json.dumps(result))
    outcomes = {key: (s["outcome"], s["reason"]) for key, s in written["steps"].items()}
    assert outcomes == {"A": ("passed", "fine"), "B": ("failed", "RuntimeError: injected failure"),
                        "C": ("skipped", "nothing to do here")}
    assert "injected failure" in written["steps"]["B"]["traceback"]
    summary = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| B: second | failed |" in summary and "| C: third | skipped |" in summary
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_check.json", "gpu_check.md"]  # no temp left


def test_a_spent_budget_skips_every_step_and_says_so(tmp_path):
    result = gpu_check.run_check(context(tmp_path, seconds=1e-9), gpu_check.STEPS, command="no time")
    for step in result["steps"].values():
        assert step["outcome"] == "skipped" and step["reason"].startswith("time budget"), step
    assert strict_json(tmp_path / "out" / "gpu_check.json")["steps"] == result["steps"]


def test_a_number_that_is_not_finite_is_written_as_null(tmp_path):
    result = {"command": "c", "started": "t", "device": "cpu", "shape": "s", "budget_s": 1.0, "environment": {},
              "steps": {"B": {"title": "t", "outcome": "passed", "reason": "r", "seconds": math.nan,
                              "values": [math.inf, 1.5]}}}
    gpu_check.write_results(tmp_path, result)
    assert strict_json(tmp_path / "gpu_check.json")["steps"]["B"]["values"] == [None, 1.5]


def test_a_bad_steps_flag_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", str(tmp_path), "--steps", "X"])
    assert not tmp_path.joinpath("gpu_check.json").exists()


@given(fixed=st.floats(0, 100), per_layer=st.floats(0, 10), near=st.integers(1, 20), extra=st.integers(1, 20))
def test_projection_recovers_a_line_and_never_undershoots_the_deepest_point(fixed, per_layer, near, extra):
    far = near + extra
    points = [(near, fixed + per_layer * near), (far, fixed + per_layer * far)]
    value, basis = seed_shape.project(points)
    assert value == pytest.approx(fixed + per_layer * SEED_LAYERS, rel=1e-9, abs=1e-6)
    assert value >= points[-1][1] - 1e-9 or far > SEED_LAYERS
    assert basis == f"projected: line through {near} and {far} layers"
    assert seed_shape.project(points + [(SEED_LAYERS, 7.0)]) == (7.0, f"measured at {SEED_LAYERS} layers")
    single, _ = seed_shape.project(points[:1])
    assert single == pytest.approx(points[0][1] * SEED_LAYERS / near)


XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")))  # what XML 1.0 can hold


@given(st.lists(st.tuples(XML_TEXT.filter(bool), st.sampled_from(["passed", "failed", "error", "skipped"]), XML_TEXT),
                max_size=6))
def test_junit_outcomes_are_read_back_as_pytest_wrote_them(cases):
    report = ET.Element("testsuites")
    suite = ET.SubElement(report, "testsuite")
    for name, outcome, message in cases:
        case = ET.SubElement(suite, "testcase", classname="tests.test_x", name=name, time="0.5")
        tag = {"failed": "failure", "error": "error", "skipped": "skipped"}.get(outcome)
        if tag:
            ET.SubElement(case, tag, message=message)
    parsed = gpu_check.parse_junit(ET.tostring(report, encoding="unicode"))
    assert [(t["test"], t["outcome"], t["message"]) for t in parsed] == [
        (f"tests.test_x::{name}", outcome, message[:500] if outcome != "passed" else "")
        for name, outcome, message in cases]
    assert all(t["seconds"] == 0.5 for t in parsed)
