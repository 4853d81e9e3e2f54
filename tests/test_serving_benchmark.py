"""The serving benchmark end to end (pytester subprocess, tiny-random): opt-in, recorded, and a server that dies
mid-sweep fails the test with its log, keeps the measured levels and leaves no process."""

from __future__ import annotations

import json
import os

from benchmarks.data import REPO_ROOT

ARGS = [str(REPO_ROOT / "benchmarks"), "--rootdir", str(REPO_ROOT), "-p", "no:cacheprovider",
        "--models", "tiny-random,openai-compatible", "--tasks", "spider", "--limit", "4", "-k", "serving",
        "--openai-base-url", "http://127.0.0.1:9/v1"]


def test_serving_is_opt_in_and_only_for_local_models(pytester):
    result = pytester.runpytest_subprocess(*ARGS, "-rs")
    result.assert_outcomes(skipped=1, deselected=2)  # openai-compatible has no serving test: its provider serves it
    result.stdout.re_match_lines([r".*marked serving: pass --run-serving to run it"])


def test_a_server_dying_mid_sweep_fails_with_its_log_and_keeps_the_levels(pytester, monkeypatch, tmp_path):
    pid_file = tmp_path / "server.pid"
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT / "tests"))
    monkeypatch.setenv("FTBENCH_TEST_SERVER_PID", str(pid_file))
    monkeypatch.setenv("FTBENCH_SERVED_CACHE", str(tmp_path / "served"))
    result = pytester.runpytest_subprocess(*ARGS, "--run-serving", "-p", "serving_fault_plugin", "--latency-slo",
                                           "60", "--benchmark-json", "out.json")
    result.assert_outcomes(failed=1, deselected=2)
    result.stdout.re_match_lines([r".*ServingFailed: spider x tiny-random: the server stopped answering at "
                                  r"concurrency 2.*", r".*--- last server log lines ---.*"])
    (run,) = json.loads((pytester.path / "out.json").read_text())["benchmarks"]
    record = run["extra_info"]
    assert record["kind"] == "serving" and record["equal_answers"]["mismatches"] == 0
    assert [level["concurrency"] for level in record["levels"]] == [1] and record["server_failed"] is True
    assert record["sustainable"]["concurrency"] == 1 and record["cost_usd"]["deploy_per_1k_requests"] > 0
    pid = int(pid_file.read_text())
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
