"""Bad input is caught before any model loads: one usage error (exit 4) naming every problem, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.data import REPO_ROOT


def run(pytester, *args: str):
    return pytester.runpytest_subprocess(str(REPO_ROOT / "benchmarks"), "--rootdir", str(REPO_ROOT),
                                         "-p", "no:cacheprovider", "--benchmark-json", "out.json", *args)


def jsonl_task(folder: Path, eval_rows: list[dict], train_rows: list[dict] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = train_rows if train_rows is not None else [{"prompt": f"q{i}", "completion": "a"} for i in range(12)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    return folder


def assert_refused_before_anything(result, pytester, caches: Path, *messages: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert "nothing was trained, generated or recorded" in text
    for message in messages:
        assert message in text, f"{message!r} not in:\n{text}"
    assert not (pytester.path / "out.json").exists()  # no record
    assert not any(p.is_file() for p in caches.rglob("*"))  # no cache entry


@pytest.fixture
def caches(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "caches"
    for variable, sub in (("FTBENCH_PREDICTION_CACHE", "predictions"), ("FTBENCH_ADAPTER_CACHE", "adapters"),
                          ("FTBENCH_OPENAI_JOBS", "jobs")):
        monkeypatch.setenv(variable, str(root / sub))
    return root


def test_several_problems_are_listed_at_once(pytester, tmp_path, caches):
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text('[spider.fixtures]\n"tiny-random" = "high"\n')
    long_row = {"prompt": "SELECT name FROM singer; " * 2000, "completion": "a"}
    task = jsonl_task(tmp_path / "task", [long_row, {"prompt": "q", "completion": "a"}])
    before = (task / "eval.jsonl").read_bytes()
    result = run(pytester, "--models", "tiny-random,tiny-random-lora", "--tasks", "spider,jsonl,nosuch",
                 "--jsonl", str(task), "--thresholds", str(thresholds))
    assert_refused_before_anything(
        result, pytester, caches, "3 problem(s)",
        f"thresholds {thresholds}: spider.fixtures.\"tiny-random\" = 'high' is not a number in [0, 1]",
        "unknown task 'nosuch'",
        "jsonl row eval/00000: the prompt is 50,000+ tokens; with --max-new-tokens 100 it exceeds the context of "
        "tiny-random, tiny-random-lora (2,048 tokens)")
    assert (task / "eval.jsonl").read_bytes() == before


def test_an_empty_eval_file_is_refused(pytester, tmp_path, caches):
    task = jsonl_task(tmp_path / "task", [])
    result = run(pytester, "--models", "tiny-random", "--tasks", "jsonl", "--jsonl", str(task))
    assert_refused_before_anything(result, pytester, caches, "jsonl: the eval split has no rows")


def test_a_malformed_row_of_a_builtin_task_is_named_before_training(pytester, tmp_path, caches):
    data = tmp_path / "data"
    spider = data / "sql_create_context_spider_intersect"
    spider.mkdir(parents=True)
    good = {"question": "How many?", "context": "CREATE TABLE t (a INT)", "answer": "SELECT count(*) FROM t"}
    (spider / "spider_create_context_train.json").write_text(json.dumps([good] * 12))
    (spider / "spider_create_context_val.json").write_text(json.dumps([good, {"question": "no answer"}]))
    thresholds = tmp_path / "thresholds.toml"
    thresholds.write_text('[spider.dir]\ndefault = 2\n')
    result = run(pytester, "--models", "tiny-random-lora", "--tasks", "spider", "--data", str(data),
                 "--thresholds", str(thresholds))
    assert_refused_before_anything(result, pytester, caches, "2 problem(s)",  # a bad split hides no other problem
                                   "spider_create_context_val.json, row 1: missing or empty ['context', 'answer']",
                                   'spider.dir."default" = 2 is not a number in [0, 1]')


def test_an_unwritable_cache_is_named_with_its_variable(pytester, tmp_path, caches, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FTBENCH_ADAPTER_CACHE", str(blocker / "adapters"))
    result = run(pytester, "--models", "tiny-random-lora", "--tasks", "spider")
    assert_refused_before_anything(result, pytester, caches,
                                   f"cache folder {blocker / 'adapters'} is not writable", "FTBENCH_ADAPTER_CACHE")


def test_non_utf8_jsonl_names_file_line_and_byte(pytester, tmp_path, caches):
    task = jsonl_task(tmp_path / "task", [{"prompt": "q", "completion": "a"}])
    (task / "eval.jsonl").write_bytes(b'{"prompt": "q", "completion": "a"}\n{"prompt": "caf\xe9", "completion": "a"}\n')
    result = run(pytester, "--models", "tiny-random", "--tasks", "jsonl", "--jsonl", str(task))
    assert result.ret == pytest.ExitCode.USAGE_ERROR  # the task is built while options are read
    assert f"{task / 'eval.jsonl'}, line 2: byte b'\\xe9' at column 16 is not UTF-8" in result.stderr.str()


@pytest.mark.parametrize("option, value", [("--max-cost", "nan"), ("--max-cost", "inf"), ("--max-error-rate", "nan"),
                                           ("--openai-timeout", "nan"), ("--openai-max-retries", "-1")])
def test_option_values_must_be_finite_and_in_range(pytester, caches, option, value):
    result = run(pytester, "--models", "tiny-random", "--tasks", "spider", option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"argument {option}: " in result.stderr.str() and value in result.stderr.str()


def test_bom_and_crlf_are_read_like_plain_utf8(tmp_path):
    from benchmarks.tasks.jsonl import JsonlTask

    task = jsonl_task(tmp_path / "task", [{"prompt": "q", "completion": "a"}])
    (task / "eval.jsonl").write_bytes(b'\xef\xbb\xbf{"prompt": "q1", "completion": "a1"}\r\n{"prompt": "q2", "completion": "a2"}\r\n')
    assert [e.target for e in JsonlTask(task).examples(None, "eval")] == ["a1", "a2"]
