"""The exit codes of README's table, command by command (the pytest rows run in test_preflight.py, test_failures.py
and test_benchmark_suite.py; diff, report and score-sql have their own files too)."""

from __future__ import annotations

import pytest

from benchmarks import cli


@pytest.mark.parametrize("argv, code", [
    (["models"], 0),
    (["estimate", "--task", "spider", "--model", "gpt-4o-mini-ft"], 0),
    (["estimate", "--task", "spider", "--model", "smollm2-135m"], 2),          # not an OpenAI fine-tuned entry
    (["finetune", "--task", "spider", "--model", "smollm2-135m"], 2),          # not a fine-tuned entry
    (["finetune", "--task", "spider", "--model", "nosuch-model"], 2),          # unknown name, with the known ones
    (["finetune", "--task", "spider", "--model", "smollm2-135m-lora", "--set", "r=-1"], 2),
    (["report", "/nonexistent/run.json", "--out", "/tmp/ftbench-report-never"], 2),
    (["diff", "/nonexistent/old.json", "/nonexistent/new.json"], 2),
])
def test_ftbench_commands(argv, code, capsys):
    assert cli.main(argv) == code
    if code:
        assert capsys.readouterr().err.strip(), "a non-zero exit says why on stderr"


@pytest.mark.parametrize("argv", [
    ["diff", "only-one.json"], ["score-sql"], ["nosuch-command"],
    # option values are refused while parsing, by the parsers pytest uses (benchmarks/options.py)
    ["finetune", "--task", "spider", "--model", "smollm2-135m-lora", "--max-cost", "nan"],
    ["finetune", "--task", "spider", "--model", "smollm2-135m-lora", "--openai-timeout", "0"],
    ["finetune", "--task", "spider", "--model", "smollm2-135m-lora", "--checkpoint-every", "-1"],
    ["estimate", "--task", "spider", "--model", "gpt-4o-mini-ft", "--epochs", "0"],
])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert "error: " in capsys.readouterr().err
