"""The backend seam: a new backend is one module plus a registry line (tests/toy_backend.py), and the runner, the
pytest plugin and the preflight name no backend."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks.data import REPO_ROOT


def test_a_new_backend_runs_the_whole_benchmark_suite(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT / "tests"))
    result = pytester.runpytest_subprocess(
        str(REPO_ROOT / "benchmarks" / "test_accuracy.py"), "--rootdir", str(REPO_ROOT), "-p", "no:cacheprovider",
        "-p", "toy_backend",
        "--models", "toy-nearest,tiny-random", "--tasks", "viggo", "--limit", "6", "--benchmark-json", "out.json")
    result.assert_outcomes(passed=2)
    runs = {b["name"]: b["extra_info"] for b in json.loads((pytester.path / "out.json").read_text())["benchmarks"]}
    toy = runs["test_accuracy[viggo-toy-nearest]"]
    assert toy["cost_usd"]["eval"] == pytest.approx(6 * 0.0004)
    assert toy["cost_usd"]["pricing"]["eval"] == "6 requests x $0.0004"
    assert toy["cost_usd"]["train"] == 0.0 and toy["training"]["pairs"] > 6
    # answers come from the train split, so they are real ViGGO meaning representations, scored as such
    assert all(p.startswith(("inform(", "request(", "give_opinion(", "confirm(", "verify_attribute(", "suggest(",
                             "request_explanation(", "recommend(", "request_attribute("))
               for p in toy["predictions"].values())
    assert toy["metrics"]["function_attributes"]["n"] == 6
    assert runs["test_accuracy[viggo-tiny-random]"]["cost_usd"]["pricing"]["eval"].startswith("machine time")


@pytest.mark.parametrize("module", ["benchmarks/runner.py", "benchmarks/conftest.py", "benchmarks/preflight.py",
                                    "benchmarks/test_accuracy.py"])
def test_the_benchmark_side_names_no_backend(module):
    source = (REPO_ROOT / module).read_text()
    assert not re.findall(r"""backend\s*[!=]=|["'](openai|hf)["']\s*(==|!=|in)|provider""", source), module
