"""`ftbench report`: Markdown tables and two PNG figures from hand-made pytest-benchmark files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.record import SCHEMA
from benchmarks.stats import wilson_interval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_record(task: str, model: str, correct: int, n: int = 40, train: float = 0.05, per_1k: float = 0.02) -> dict:
    """A schema-1 record shaped like benchmarks/record.py (only the per-item outcomes are left out)."""
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
    assert report.main([str(run_file), "--out", str(out)]) == 0
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
    assert report.main([str(bad), "--out", str(tmp_path / "out")]) == 2
    assert f"{bad}: not JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_input_is_never_written_over(run_file, capsys):
    before = run_file.read_bytes()
    renamed = run_file.rename(run_file.with_name("report.md"))
    assert report.main([str(renamed), "--out", str(renamed.parent)]) == 2
    assert "refusing to write" in capsys.readouterr().err and renamed.read_bytes() == before


def test_missing_matplotlib_names_the_extra(run_file, tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` fail as if not installed
    assert report.main([str(run_file), "--out", str(tmp_path / "out")]) == 2
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


def test_errors_are_shown_beside_n_and_listed(tmp_path):
    from benchmarks.record import error_summary

    record = make_record("spider", "openai-compatible", correct=30)
    record["errors"] = error_summary({"val/0001": {"generate": "http 503 after 6 attempts: down"}}, 40)
    entries = report.entries_from([write_run(tmp_path / "run.json", record)])
    text = report.render_markdown(entries, ["run.json"], plots=False)
    assert "(1 errors)" in text and "1 items failed, not scored (http 503 after 6 attempts: 1)" in text
