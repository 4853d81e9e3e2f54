"""The benchmark suite end to end on tiny-random, through pytest's own pytester (a real subprocess run)."""

from __future__ import annotations

import json

import pytest

from benchmarks.data import REPO_ROOT

BASE_ARGS = [str(REPO_ROOT / "benchmarks" / "test_accuracy.py"), "--rootdir", str(REPO_ROOT), "-p", "no:cacheprovider",
             "--models", "tiny-random,tiny-random-lora", "--tasks", "spider,viggo"]


def run(pytester, *args):
    return pytester.runpytest_subprocess(*BASE_ARGS, *args)


def test_k_selects_pairs_and_json_holds_the_record(pytester):
    result = run(pytester, "-k", "spider", "--limit", "8", "--benchmark-json", "out.json")
    result.assert_outcomes(passed=2, deselected=2)
    runs = json.loads((pytester.path / "out.json").read_text())["benchmarks"]
    assert sorted(b["name"] for b in runs) == ["test_accuracy[spider-tiny-random-lora]", "test_accuracy[spider-tiny-random]"]
    lora = next(b["extra_info"] for b in runs if b["name"].endswith("lora]"))
    assert lora["schema"] == 2 and lora["task"] == "spider" and lora["metric"] == "execution"
    assert lora["data"]["n"] == 8 and lora["data"]["fingerprint"].startswith("sha256:")
    assert sorted(lora["items"]) == [f"val/{i:05d}" for i in range(8)]
    assert set(lora["metrics"]) == {"execution", "execution_synth", "structural", "exact"}
    assert lora["model_fingerprint"]["adapter"].startswith("sha256:") and lora["training"]["steps"] > 0
    assert lora["cost_usd"]["train"] > 0 and lora["cost_usd"]["eval"] > 0 and lora["cost_usd"]["prices_date"]
    assert lora["latency_s"]["p50"] > 0 and lora["tokens"]["prompt"] > 0
    assert runs[0]["stats"]["rounds"] == 1
    # Progress reaches the terminal through pytest's capture (no -s); not a TTY here, so a line per phase.
    result.stdout.re_match_lines([r"ftbench: spider-tiny-random-lora: training a LoRA adapter on \d+ pairs .*"
                                  r"precision (fp32|bf16) \(auto: CPU: .*\)",
                                  r"ftbench: spider-tiny-random-lora: LoRA training \((fp32|bf16)\): \d+ steps\.\.\.",
                                  r"ftbench: spider-tiny-random-lora: LoRA training .*: done, \d+/\d+ steps in .* step/s.*",
                                  r"ftbench: spider-tiny-random-lora: generating \(tiny-random-lora\): 8 items\.\.\."])


def test_failing_threshold_names_everything_and_still_records(pytester):
    thresholds = pytester.path / "thresholds.toml"
    thresholds.write_text('[viggo.fixtures]\n"tiny-random" = 0.99\n')
    result = run(pytester, "-k", "viggo-tiny-random and not lora", "--limit", "4", "--thresholds", str(thresholds),
                 "--benchmark-json", "out.json", "-q")
    assert "ftbench: viggo-tiny-random: generating" not in result.stdout.str()  # -q: no progress lines
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.re_match_lines([r".*viggo x tiny-random on fixtures: function_attributes = 0\.\d+ .*n=4.* below the "
                                  r"threshold 0\.990 set in .*thresholds\.toml \[viggo\.fixtures\.\"tiny-random\"\]"])
    (record,) = [b["extra_info"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]]
    assert record["threshold"]["value"] == 0.99


def test_baseline_gate_fails_a_regressed_pair(pytester):
    run(pytester, "-k", "spider-tiny-random and not lora", "--limit", "8", "--benchmark-json", "base.json")
    document = json.loads((pytester.path / "base.json").read_text())
    record = document["benchmarks"][0]["extra_info"]
    for outcome in record["items"].values():  # pretend the baseline got every item right
        outcome["execution"] = True
    record["accuracy"] = record["metrics"]["execution"]["value"] = 1.0
    (pytester.path / "base.json").write_text(json.dumps(document))
    result = run(pytester, "-k", "spider-tiny-random and not lora", "--limit", "8", "--baseline", "base.json")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*regressed against --baseline*"])


def test_unknown_model_is_a_usage_error(pytester):
    result = run(pytester, "--models", "smollm3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown model 'smollm3'*Known models:*"])


def test_gpu_entries_are_skipped_with_a_reason_naming_the_flag(pytester):
    result = run(pytester, "--models", "codellama-34b-lora", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*marked gpu: pass --run-gpu to run it*"])


def test_a_rerun_of_an_unchanged_matrix_generates_nothing(pytester, monkeypatch, tmp_path):
    monkeypatch.setenv("FTBENCH_PREDICTION_CACHE", str(tmp_path / "predictions"))  # empty: other tests share theirs
    args = ["-k", "viggo", "--limit", "4"]
    run(pytester, *args, "--benchmark-json", "first.json").assert_outcomes(passed=2, deselected=2)
    run(pytester, *args, "--benchmark-json", "second.json").assert_outcomes(passed=2, deselected=2)
    first, second = ({b["name"]: b["extra_info"] for b in json.loads((pytester.path / f).read_text())["benchmarks"]}
                     for f in ("first.json", "second.json"))
    for name, record in second.items():
        assert record["cost_usd"]["pricing"]["cached_items"] == 4, name
        assert record["latency_s"]["source"] == "stored timings of cached items"
        assert record["predictions"] == first[name]["predictions"] and record["items"] == first[name]["items"]
        assert first[name]["latency_s"]["source"] == "generated"
