"""`ftbench report`: Markdown tables and two PNG figures from hand-made pytest-benchmark files."""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks import report
from benchmarks.cli import main as ftbench
from benchmarks.record import LARGEST_COST_OR_TIME
from benchmarks.record import SCHEMA
from benchmarks.stats import wilson_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASELINES = Path(__file__).parent.parent / "fixtures" / "baselines"


def make_record(task: str, model: str, correct: int, n: int = 40, train: float = 0.05, per_1k: float = 0.02) -> dict:
    """A record (JSON) shaped like benchmarks/record.py, holding the sections every writer records."""
    ci = list(wilson_interval(correct, n))
    return {
        "schema": SCHEMA, "task": task, "model": model,
        "data": {"source": "fixtures", "split": "val", "n": n, "fingerprint": "sha256:" + "a" * 64},
        "model_fingerprint": {"base": "HuggingFaceTB/SmolLM2-135M-Instruct", "adapter": None, "recipe": None},
        "metric": "execution", "accuracy": correct / n, "ci95": ci,
        "metrics": {"execution": {"value": correct / n, "correct": correct, "n": n, "ci95": ci},
                    "exact": {"value": correct / 2 / n, "correct": correct // 2, "n": n}},
        "items": {f"val/{i:04d}": {"execution": i < correct, "exact": i < correct // 2} for i in range(n)},
        "latency_s": {"p50": 0.4, "p95": 0.9, "mean": 0.5, "total": 0.5 * n},
        "cost_usd": {"train": train, "eval": per_1k * n / 1000, "per_1k_requests": per_1k,
                     "prices_date": "2025-01-15", "pricing": {}},
        "machine": {"hardware": "cpu: 2 cores"},
    }


def write_run(path: Path, *records: dict) -> Path:
    benchmarks = [{"name": f"test_accuracy[{r['task']}-{r['model']}]",
                   "fullname": f"benchmarks/test_accuracy.py::test_accuracy[{r['task']}-{r['model']}]",
                   "params": {"case": f"{r['task']}-{r['model']}"}, "extra_info": r,
                   "stats": {"min": 9.0, "max": 9.0, "mean": 9.0, "median": 9.0, "rounds": 1, "iterations": 1}}
                  for r in records]
    path.write_text(json.dumps({"machine_info": {"node": "ci"}, "commit_info": {"id": "abc"},
                                "benchmarks": benchmarks, "datetime": "2025-01-15T10:00:00", "version": "5.3.1"}))
    return path


@pytest.fixture
def run_file(tmp_path) -> Path:
    return write_run(
        tmp_path / "run.json",
        make_record("spider", "smollm2-135m", 8, train=0.0),
        make_record("spider", "smollm2-135m-lora", 22),
        make_record("spider", "gpt-4.1-nano-ft", 30, train=1.2, per_1k=0.09),
        make_record("viggo", "smollm2-135m-lora", 25, train=0.08, per_1k=0.03),
    )


def assert_png(path: Path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, channels = imread(path).shape
    assert 300 <= height <= 2000 and 400 <= width <= 4000 and channels in (3, 4)


def test_report_writes_markdown_and_two_pngs(tmp_path, run_file, capsys):
    out = tmp_path / "report"
    assert ftbench(["report", str(run_file), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["accuracy_vs_cost.png", "cost_breakdown.png", "report.md"]
    assert_png(out / "accuracy_vs_cost.png")
    assert_png(out / "cost_breakdown.png")
    markdown = (out / "report.md").read_text()
    assert capsys.readouterr().out == markdown


def test_markdown_has_the_comparison_and_per_metric_tables(run_file, tmp_path):
    markdown = report.write_report([run_file], tmp_path / "out", plots=False)
    assert "| task | model | metric | accuracy [95% CI] | train cost | eval cost / 1K requests |" in markdown
    row = "| spider | gpt-4.1-nano-ft | execution | 75.0% [59.8%, 85.8%] | $1.20 | $0.09 | 0.4s / 0.9s | 40 |"
    assert row in markdown
    lo, hi = wilson_interval(4, 40)  # the record had no ci95 for "exact": the report computes it
    assert f"| spider | smollm2-135m | exact | 10.0% [{lo:.1%}, {hi:.1%}] | 4 / 40 |" in markdown
    assert "![Accuracy vs total cost]" not in markdown and not (tmp_path / "out" / "cost_breakdown.png").exists()


def test_several_runs_are_labelled_by_file(tmp_path):
    a = write_run(tmp_path / "recipe-a.json", make_record("spider", "smollm2-135m-lora", 20))
    b = write_run(tmp_path / "recipe-b.json", make_record("spider", "smollm2-135m-lora", 24))
    markdown = report.write_report([a, b], tmp_path / "out")
    assert "| recipe-a | spider | smollm2-135m-lora |" in markdown and "| recipe-b | spider |" in markdown
    assert_png(tmp_path / "out" / "accuracy_vs_cost.png")


def test_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert ftbench(["report", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert f"{bad}: not JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_input_is_never_written_over(run_file, capsys):
    before = run_file.read_bytes()
    renamed = run_file.rename(run_file.with_name("report.md"))
    assert ftbench(["report", str(renamed), "--out", str(renamed.parent)]) == 2
    assert "refusing to write" in capsys.readouterr().err and renamed.read_bytes() == before


def test_missing_matplotlib_names_the_extra(run_file, tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` fail as if not installed
    assert ftbench(["report", str(run_file), "--out", str(tmp_path / "out")]) == 2
    assert "pip install 'ftbench[plots]'" in capsys.readouterr().err
    assert not (tmp_path / "out" / "report.md").exists()


def test_report_names_the_machines_and_each_adapters_precision(tmp_path):
    lora = make_record("spider", "smollm2-135m-lora", 22)
    lora["training"] = {"precision": "fp32"}
    lora["machine"] |= {"precision_auto": "fp32", "precision_reason": "CPU: AVX2, no AMX/AVX512-BF16"}
    amx = make_record("viggo", "smollm2-135m-lora", 25) | {"machine": {"hardware": "cpu: Xeon", "precision_auto": "bf16"}}
    amx["training"] = {"precision": "bf16"}
    markdown = report.render_markdown(report.entries_from([write_run(tmp_path / "r.json", lora, amx)]), ["r.json"],
                                      plots=False)
    assert "Machines: cpu: 2 cores (precision auto -> fp32); cpu: Xeon (precision auto -> bf16)" in markdown
    assert "| $0.05 (fp32) |" in markdown and "| $0.05 (bf16) |" in markdown


def test_the_committed_schema_1_baseline_reproduces_its_committed_report():
    entries = report.entries_from([BASELINES / "seed-limit100-fp32.json"])
    markdown = report.render_markdown(entries, ["fixtures/baselines/seed-limit100-fp32.json"], plots=True)
    assert markdown == (BASELINES / "seed-limit100-fp32-report" / "report.md").read_text()


def test_a_schema_1_record_reads_as_a_run_without_errors(tmp_path):
    entries = report.entries_from([write_run(tmp_path / "run.json", make_record("spider", "m", 22) | {"schema": 1})])
    assert (entries[0].errors, entries[0].error_reasons, entries[0].n, entries[0].accuracy) == (0, "", 40, 22 / 40)


def test_errors_are_shown_beside_n_and_listed(tmp_path):
    from benchmarks.record import error_summary

    record = make_record("spider", "openai-compatible", correct=30)
    record["errors"] = error_summary({"val/0001": {"generate": "http 503 after 6 attempts: down"}}, 40)
    entries = report.entries_from([write_run(tmp_path / "run.json", record)])
    text = report.render_markdown(entries, ["run.json"], plots=False)
    assert "(1 errors)" in text and "1 items failed, not scored (http 503 after 6 attempts: 1)" in text


# ------------------------------------------------------------------------- malformed records (issue 13)

PAIR = "spider / smollm2-135m-lora"


def refused(tmp_path, capsys, *records: dict, plots: bool = False) -> str:
    """Report a run holding `records`: assert exit 2, nothing written and no traceback; return the message."""
    run = write_run(tmp_path / "new.json", *records)
    out = tmp_path / "out"
    assert ftbench(["report", str(run), "--out", str(out), *([] if plots else ["--no-plots"])]) == 2
    assert not out.exists()
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    return captured.err


def test_the_testers_non_finite_run_is_refused_naming_every_field(tmp_path, capsys):
    """Before: the report printed nan% and $-inf and exited 0."""
    record = make_record("spider", "smollm2-135m-lora", 22, train=float("-inf"), per_1k=float("nan"))
    record["accuracy"], record["latency_s"]["p50"] = float("nan"), float("inf")
    message = refused(tmp_path, capsys, record, plots=True)
    for line in ("accuracy = NaN", "latency_s.p50 = Infinity", "cost_usd.train = -Infinity",
                 "cost_usd.per_1k_requests = NaN", "cost_usd.eval = NaN"):
        assert f"{tmp_path / 'new.json'}: {PAIR}: {line} is not a finite number" in message, message


@pytest.mark.parametrize(("field", "value", "words"), [
    ("metrics", [0.5], "metrics = [0.5] is not an object"),
    ("latency_s", [0.4, 0.9], "latency_s = [0.4, 0.9] is not an object"),
    ("data", "fixtures", 'data = "fixtures" is not an object'),
    ("machine", ["cpu"], 'machine = ["cpu"] is not an object'),
    ("training", "lora", 'training = "lora" is not an object'),
    ("ci95", [0.1, "0.9"], 'ci95[1] = "0.9" is not a number'),
])
def test_a_field_of_the_wrong_type_is_refused_naming_it(tmp_path, capsys, field, value, words):
    """Before: a traceback and exit 1."""
    record = make_record("spider", "smollm2-135m-lora", 22) | {field: value}
    assert f"new.json: {PAIR}: {words}" in refused(tmp_path, capsys, record)


def test_json_nested_too_deeply_exits_2_naming_the_file(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"benchmarks": ' + "[" * 50_000 + "]" * 50_000 + "}")
    assert ftbench(["report", str(deep), "--out", str(tmp_path / "out")]) == 2
    assert f"{deep}: JSON nested too deeply to read" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bad_file_among_several_writes_nothing(tmp_path, capsys):
    good = write_run(tmp_path / "good.json", make_record("spider", "smollm2-135m-lora", 22))
    bad = write_run(tmp_path / "bad.json", make_record("viggo", "base", 5) | {"accuracy": float("inf")})
    assert ftbench(["report", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    assert f"{bad}: viggo / base: accuracy = Infinity is not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unmeasured_values_show_as_a_dash_never_nan(tmp_path):
    """A run where nothing was answered: the runner writes nulls, and the report shows "–" for them."""
    record = make_record("spider", "openai-compatible", 0, n=5)
    record |= {"accuracy": None, "ci95": None, "latency_s": {"p50": None, "p95": None, "mean": None, "total": 3.0}}
    record["metrics"]["execution"] = {"value": None, "n": 0, "ci95": None}
    record["cost_usd"]["per_1k_requests"] = None
    markdown = report.write_report([write_run(tmp_path / "run.json", record)], tmp_path / "out", plots=False)
    assert "| spider | openai-compatible | execution | – | $0.05 | – | – / – | 5 |" in markdown
    assert not NON_FINITE_TEXT.search(markdown)


NON_FINITE_TEXT = re.compile(r"(?i)\b(nan|-?inf|infinity)\b")
costs = st.one_of(st.none(), st.floats(min_value=0, max_value=LARGEST_COST_OR_TIME), st.integers(0, 10**12))


@settings(deadline=None, max_examples=40)
@given(costs, costs, costs, st.integers(0, 40))
def test_any_valid_numbers_render_without_nan_or_inf(train, per_1k, p50, correct):
    """Any number a record may hold (nulls, zeros, the largest cost allowed) renders as a finite number or "–"."""
    record = make_record("spider", "smollm2-135m-lora", correct)
    record["cost_usd"] |= {"train": train, "per_1k_requests": per_1k}
    record["latency_s"]["p50"] = p50
    with tempfile.TemporaryDirectory() as folder:
        entries = report.entries_from([write_run(Path(folder) / "run.json", record)])
    assert not NON_FINITE_TEXT.search(report.render_markdown(entries, ["run.json"], plots=False))
    assert math.isfinite(entries[0].total_cost_usd)


def test_figures_of_the_largest_costs_allowed_are_drawn(tmp_path):
    huge = make_record("spider", "smollm2-135m-lora", 22)
    huge["cost_usd"] |= {"train": LARGEST_COST_OR_TIME, "per_1k_requests": LARGEST_COST_OR_TIME}
    assert ftbench(["report", str(write_run(tmp_path / "run.json", huge)), "--out", str(tmp_path / "out")]) == 0
    assert_png(tmp_path / "out" / "accuracy_vs_cost.png")
    assert_png(tmp_path / "out" / "cost_breakdown.png")


def test_a_cost_near_the_float_limit_is_refused(tmp_path, capsys):
    """Before: accepted, and matplotlib's tick locator raised OverflowError drawing it (a traceback)."""
    huge = make_record("spider", "smollm2-135m-lora", 22)
    huge["cost_usd"]["train"] = sys.float_info.max
    message = refused(tmp_path, capsys, huge, plots=True)
    assert f"{PAIR}: cost_usd.train = 1.7976931348623157e+308 is above 1e+12: no real cost (USD) or time" in message
