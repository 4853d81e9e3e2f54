"""The report's decision section from real records: a benchmark run, a serving record and estimate records."""

from __future__ import annotations

import json

import pytest

from benchmarks.cli import main
from benchmarks.data import REPO_ROOT

BASELINE = REPO_ROOT / "fixtures" / "baselines" / "seed-limit100-fp32.json"
LORA = next(b["extra_info"] for b in json.loads(BASELINE.read_text())["benchmarks"]
            if b["name"] == "test_accuracy[spider-smollm2-135m-lora]")


def serving_document(requests_per_s: float, failure: str | None = None, fingerprint: dict | None = None) -> dict:
    """A serving record of spider x smollm2-135m-lora as benchmarks/serving.py writes it (levels left out), of the
    baseline's model unless `fingerprint` says otherwise."""
    record = {"schema": 2, "kind": "serving", "task": "spider", "model": "smollm2-135m-lora", "latency_slo_s": 10.0,
              "model_fingerprint": fingerprint or LORA["model_fingerprint"] | {"dtype": "float32", "device": "cpu"},
              "failure": failure, "levels": [], "equal_answers": {"checked": 8, "mismatches": 0},
              "sustainable": {"concurrency": 2, "requests_per_s": requests_per_s, "latency_p95_s": 4.0},
              "cost_usd": {"deploy_per_1k_requests": 0.09 / (requests_per_s * 3600) * 1000, "hourly": 0.09}}
    return {"benchmarks": [{"name": "test_serving[spider-smollm2-135m-lora]", "extra_info": record}]}


@pytest.fixture
def inputs(tmp_path):
    serving = tmp_path / "serving.json"
    serving.write_text(json.dumps(serving_document(requests_per_s=1.0)))
    estimate = tmp_path / "estimate.json"
    assert main(["estimate", "--task", "spider", "--model", "gpt-3.5-turbo-ft", "--json", str(estimate)]) == 0
    return tmp_path, serving, estimate


def test_the_decision_joins_accuracy_serving_and_estimate_records(inputs, capsys):
    folder, serving, estimate = inputs
    out = folder / "report"
    assert main(["report", str(BASELINE), str(serving), str(estimate), "--out", str(out),
                 "--volume", "100", "--volume", "10000000"]) == 0
    text = (out / "report.md").read_text()
    spider = text[text.index("### spider"):text.index("### viggo")]
    # self-hosted at 1 request/s on a $0.09/h CPU: $0.025 per 1K requests, $65.70 a month always on
    assert "| smollm2-135m-lora | 9.0% (4.8%-16.2%) | $0.0103 | $0.025 at p95 <= 10 s, 2 in flight | $65.70 |" in spider
    assert "| gpt-3.5-turbo-ft | unknown |" in spider and "(API tokens)" in spider
    assert "less accurate than smollm2-135m-lora (paired p=0.00781)" in spider
    assert "- smollm2-135m-lora vs gpt-3.5-turbo-ft: " in spider
    picks = [line for line in spider.splitlines() if line.startswith("- **At")]
    assert "gpt-3.5-turbo-ft" in picks[0] and "accuracy is unknown" in picks[0]  # a trickle: pay per request
    assert "smollm2-135m-lora" in picks[1]  # ten million a month: the instance
    assert (out / "monthly_cost_spider.png").stat().st_size > 10_000


def test_a_failed_serving_run_prices_nothing(inputs, tmp_path):
    _, _, estimate = inputs
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps(serving_document(1.0, failure="the server died")))
    out = tmp_path / "report"
    assert main(["report", str(BASELINE), str(failed), "--out", str(out), "--no-plots", "--volume", "1000"]) == 0
    assert "unknown (no serving record: pytest benchmarks --run-serving)" in (out / "report.md").read_text()


def test_a_serving_record_of_another_model_is_not_joined(inputs, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps(serving_document(1.0, fingerprint=LORA["model_fingerprint"] | {"adapter": "sha256:0"})))
    out = tmp_path / "report"
    assert main(["report", str(BASELINE), str(other), "--out", str(out), "--no-plots"]) == 0
    text = (out / "report.md").read_text()
    assert "Note: serving record of spider x smollm2-135m-lora not used: its model is not the benchmarked one." in text
    assert "$65.70" not in text


def test_a_serving_record_with_a_nan_is_refused(tmp_path, capsys):
    document = serving_document(1.0)
    document["benchmarks"][0]["extra_info"]["sustainable"]["requests_per_s"] = float("nan")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    assert main(["report", str(BASELINE), str(bad), "--out", str(tmp_path / "r"), "--no-plots"]) == 2
    assert "serving record test_serving[spider-smollm2-135m-lora]: sustainable.requests_per_s" in \
        capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_without_serving_estimates_or_volumes_the_report_is_unchanged(tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(BASELINE), "--out", str(out), "--no-plots"]) == 0
    assert "Which to pick" not in (out / "report.md").read_text()
