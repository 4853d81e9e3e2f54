"""Failures are never scores: `pytest benchmarks` against a real local server that fails on purpose.

Each case runs the benchmark suite in a subprocess (pytester) against tests/flaky_server.py on 127.0.0.1 and checks
the exit code, the message and the record; the reruns check that only failed items are asked again.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.data import REPO_ROOT, resolve_data
from benchmarks.tasks import get_task
from tests.flaky_server import MALFORMED, FlakyServer, Reply, answer, status

N = 5


@pytest.fixture(scope="module")
def questions() -> list[str]:
    return [e.fields["question"] for e in get_task("spider").examples(resolve_data("fixtures"), "val")[:N]]


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("FTBENCH_PREDICTION_CACHE", str(tmp_path / "predictions"))  # one cache per case
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    flaky = FlakyServer().start()
    yield flaky
    flaky.stop()


def run(pytester, server: FlakyServer, *args: str):
    """`pytest benchmarks` for spider x openai-compatible on the first N fixture rows; returns (result, record)."""
    result = pytester.runpytest_subprocess(
        str(REPO_ROOT / "benchmarks" / "test_accuracy.py"), "--rootdir", str(REPO_ROOT), "-p", "no:cacheprovider",
        "--models", "openai-compatible", "--tasks", "spider", "--limit", str(N),
        "--openai-base-url", server.base_url, "--openai-model", "flaky", "--openai-max-retries", "1",
        "--benchmark-json", "out.json", *args)
    (record,) = [b["extra_info"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]]
    return result, record


def test_an_outage_fails_as_errors_with_the_status_and_records_no_answer(pytester, server):
    server.behaviour = lambda question, attempt: status(503)
    result, record = run(pytester, server)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.re_match_lines([r"E +benchmarks.runner.ErrorRateExceeded: ERRORS: 5 of 5 items of spider x "
                                  r"openai-compatible failed \(100\.0% > --max-error-rate 0\) at "
                                  r"http://127\.0\.0\.1:\d+/v1; by reason: \{'http 503 after 2 attempts': 5\}.*"])
    assert record["errors"]["count"] == 5 and record["errors"]["by_reason"] == {"http 503 after 2 attempts": 5}
    assert record["accuracy"] is None and set(record["predictions"].values()) == {None}
    assert record["latency_s"]["p50"] is None and record["requests"]["max_retries"] == 1
    assert len(server.requests) == 2 * N  # one retry each


def test_one_bad_item_fails_alone_and_the_rerun_asks_only_for_it(pytester, server, questions):
    bad = questions[2]
    server.behaviour = lambda q, attempt: MALFORMED["an HTML page"] if q == bad else answer("SELECT 1")
    result, record = run(pytester, server)
    assert result.ret == pytest.ExitCode.TESTS_FAILED and "ERRORS: 1 of 5 items" in result.stdout.str()
    (error,) = record["errors"]["first"]
    assert error["stage"] == "generate" and error["reason"].startswith("malformed response after 2 attempts: not JSON")
    assert record["predictions"][error["id"]] is None and record["metrics"]["execution"]["n"] == 4

    server.behaviour, server.requests = (lambda q, attempt: answer("SELECT 1")), []
    result, record = run(pytester, server)
    result.assert_outcomes(passed=1)
    assert server.questions() == [bad]  # the four answers of the first run were cached as they arrived
    assert record["errors"]["count"] == 0 and record["metrics"]["execution"]["n"] == N


def test_each_malformed_200_is_retried_like_a_5xx(pytester, server, questions):
    kinds = dict(zip(questions, sorted(MALFORMED)))  # one kind of bad body per item, on its first attempt
    server.behaviour = lambda q, attempt: MALFORMED[kinds[q]] if attempt == 1 else answer("SELECT 1")
    result, record = run(pytester, server)
    result.assert_outcomes(passed=1)
    assert record["errors"]["count"] == 0 and sorted(server.questions()) == sorted(questions * 2)


def test_429_with_retry_after_is_waited_out(pytester, server, questions):
    server.behaviour = lambda q, attempt: status(429, retry_after=0.2) if attempt == 1 else answer("SELECT 1")
    result, record = run(pytester, server)
    result.assert_outcomes(passed=1)
    assert [s for _, _, s in server.requests].count(429) == N and record["errors"]["count"] == 0


def test_a_timeout_is_the_items_error_and_the_timeout_is_the_users(pytester, server, questions):
    slow = questions[0]
    server.behaviour = lambda q, attempt: Reply(**{**answer("SELECT 1").__dict__, "delay_s": 3 if q == slow else 0})
    result, record = run(pytester, server, "--openai-timeout", "0.5", "--max-error-rate", "0.2")
    result.assert_outcomes(passed=1)  # 1 of 5 is within --max-error-rate 0.2; the record still says so
    assert record["errors"]["by_reason"] == {"timeout after 0.5 s x 2": 1} and record["requests"]["timeout_s"] == 0.5
    assert record["latency_s"]["failed_items"] == 1 and record["latency_s"]["p95"] < 3


def test_lone_surrogates_are_recorded_and_cached_losslessly(pytester, server):
    text = "SELECT '\ud83d' FROM singer"
    server.behaviour = lambda q, attempt: answer(text)
    result, record = run(pytester, server)
    result.assert_outcomes(passed=1)
    assert set(record["predictions"].values()) == {text}
    server.requests = []
    result, record = run(pytester, server)
    result.assert_outcomes(passed=1)
    assert server.requests == [] and set(record["predictions"].values()) == {text}
