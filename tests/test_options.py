"""One option table (benchmarks/options.py) for `pytest benchmarks` and the `ftbench` commands: a value parses to
the same thing on both sides, a bad one is refused on both with the same message, and the defaults agree."""

from __future__ import annotations

import argparse
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import options
from benchmarks.cli import estimate, finetune
from benchmarks.data import REPO_ROOT, resolve_data
from benchmarks.tasks.scorers import SCORERS

COMMANDS = {options.FINETUNE: finetune, options.ESTIMATE: estimate}
REQUIRED = ["--task", "spider", "--model", "gpt-4o-mini-ft"]
SHARED = {
    options.FINETUNE: {"data", "jsonl", "prices", "recipe", "max-cost", "openai-timeout", "openai-max-retries"},
    options.ESTIMATE: {"data", "jsonl", "prices", "openai-model", "openai-epochs"},
}
SHARED_PAIRS = [(command, name) for command, names in SHARED.items() for name in sorted(names)]

# Text as a user types it: numbers of every kind (NaN, infinities, negatives, huge), and a few non-numbers.
TEXTS = st.one_of(st.floats().map(str), st.integers(-10, 10**12).map(str),
                  st.sampled_from(["nan", "-inf", "Infinity", "1e400", "$3", "$-1", "0x10", " 7 ", "", "abc"]))


@pytest.fixture
def root_conftest(pytestconfig):
    """The repository's conftest.py, whose pytest_addoption a fresh config (pytester.parseconfig) gets."""
    return next(plugin for plugin in pytestconfig.pluginmanager.get_plugins()
                if getattr(plugin, "__file__", "") == str(REPO_ROOT / "conftest.py"))


@pytest.fixture
def pytest_side(pytester, root_conftest, monkeypatch):
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # entry-point plugins take most of a parse's time
    pytester.plugins.append(root_conftest)
    return pytester.parseconfig  # raises pytest.UsageError on a refused value (exit 4 in a real run)


def command_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(exit_on_error=False)  # a refused value raises ArgumentError instead of exiting
    COMMANDS[command].add_arguments(parser)
    return parser


def through_pytest(parse, option: options.Option, text: str):
    try:
        return "parsed", parse(f"{option.flag}={text}").getoption(option.dest)
    except pytest.UsageError as err:
        return "refused", str(err)


def through_command(command: str, flag: str, option: options.Option, text: str):
    try:
        return "parsed", vars(command_parser(command).parse_args([*REQUIRED, f"{flag}={text}"]))[option.dest]
    except argparse.ArgumentError as err:
        return "refused", str(err).split(": ", 1)[1]  # after "argument --flag: ", which names the spellings


def test_the_shared_options_are_the_ones_both_sides_offer():
    for command, names in SHARED.items():
        assert {n for n in options.offered_by(command) if options.PYTEST in options.BY_NAME[n].used_by} == names


@pytest.mark.parametrize("command, name", SHARED_PAIRS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_a_value_parses_alike_through_pytest_and_the_command(pytest_side, command, name, text):
    option = options.BY_NAME[name]
    in_pytest = through_pytest(pytest_side, option, text)
    for flag in (option.flag, *option.aliases):
        in_command = through_command(command, flag, option, text)
        if in_pytest[0] == "refused":
            assert in_command[0] == "refused" and in_command[1] in in_pytest[1], (in_pytest, in_command)
        else:
            assert in_command == in_pytest


@pytest.mark.parametrize("command, name, text", [
    (options.FINETUNE, "max-cost", "nan"), (options.FINETUNE, "max-cost", "inf"), (options.FINETUNE, "max-cost", "-1"),
    (options.FINETUNE, "openai-timeout", "nan"), (options.FINETUNE, "openai-timeout", "0"),
    (options.FINETUNE, "openai-max-retries", "-1"), (options.FINETUNE, "openai-max-retries", "1.5"),
    (options.ESTIMATE, "openai-epochs", "0"), (options.ESTIMATE, "openai-epochs", "nan"),
])
def test_out_of_range_values_are_refused_on_both_sides(pytest_side, command, name, text):
    option = options.BY_NAME[name]
    refused = f"argument {option.flag}: expected "
    assert through_pytest(pytest_side, option, text)[0] == "refused"
    assert refused in through_pytest(pytest_side, option, text)[1]
    assert through_command(command, option.flag, option, text)[0] == "refused"


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_and_pytest_have_the_same_defaults(pytest_side, command):
    """No option's default differs between the sides (see benchmarks/options.py): nothing is excepted here."""
    in_pytest, in_command = pytest_side(), vars(command_parser(command).parse_args(REQUIRED))
    for name in SHARED[command]:
        dest = options.BY_NAME[name].dest
        assert in_command[dest] == in_pytest.getoption(dest), name


def test_an_option_a_side_does_not_offer_runs_at_the_settings_default():
    """`ftbench finetune` has no --batch-size and pytest no --checkpoint-every: both read the table's default, which
    must be what Settings (and its OpenAISettings, TrainSettings) default to."""
    from benchmarks.runner import Settings
    from models.pricing import load_prices

    everything_default = options.settings_from_options(options.option_values({}))
    assert everything_default == Settings(data=resolve_data("fixtures"), limit=None, prices=load_prices(None))


def test_pytest_and_finetune_build_the_same_settings(pytest_side):
    values = ["--data=fixtures", "--max-cost=$2.5", "--openai-timeout=7", "--openai-max-retries=0"]
    from_pytest = options.settings_from_options(options.option_values(vars(pytest_side(*values).option)))
    args = command_parser(options.FINETUNE).parse_args([*REQUIRED, *values])
    from_command = options.settings_from_options(options.option_values(vars(args)))
    assert from_pytest == from_command
    assert (from_command.max_cost_usd, from_command.openai.timeout_s, from_command.openai.max_retries) == (2.5, 7, 0)


def test_jsonl_scorer_choices_are_the_scorer_registry(pytest_side, monkeypatch):
    monkeypatch.setitem(SCORERS, "toy", SCORERS["exact"])  # a scorer registered is a choice, with no other edit
    for name in SCORERS:
        assert pytest_side(f"--jsonl-scorer={name}").getoption("jsonl_scorer") == name
    with pytest.raises(pytest.UsageError, match="invalid choice: 'nosuch'"):
        pytest_side("--jsonl-scorer=nosuch")


@given(st.floats())
def test_usd_takes_what_float_takes_when_finite_and_not_negative(value):
    text = str(value)
    if value >= 0 and value != float("inf"):
        assert options.usd(text) == options.usd(f"${text}") == value
    else:
        refusal = re.escape(f"expected an amount in USD >= 0, got '{text}'")
        with pytest.raises(argparse.ArgumentTypeError, match=refusal):
            options.usd(text)
