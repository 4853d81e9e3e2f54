"""Benchmark fixtures: the task x model matrix, resolved settings, and models prepared once per session."""

from __future__ import annotations

import contextlib

import pytest

from benchmarks.options import option_values, settings_from_options
from benchmarks.runner import PreparedModel, Settings, prepare_model
from benchmarks.tasks import Task, get_task
from models import catalog, progress
from models.backends import backend_for


_previous_display = pytest.StashKey[progress.Display]()  # the display to restore when the session ends


class _TerminalStream:
    """A text stream onto pytest's terminal that writes around output capture, so progress shows without `-s`."""

    def __init__(self, config: pytest.Config):
        self._reporter = config.pluginmanager.get_plugin("terminalreporter")
        self._capture = config.pluginmanager.get_plugin("capturemanager")

    def isatty(self) -> bool:
        isatty = getattr(self._reporter, "isatty", False)
        return bool(isatty() if callable(isatty) else isatty)

    def write(self, text: str) -> int:
        with self._capture.global_and_fixture_disabled() if self._capture else contextlib.nullcontext():
            self._reporter.ensure_newline()  # leave the line of test dots; pytest starts a fresh one after us
            self._reporter.write(text, flush=True)
        return len(text)

    def flush(self) -> None:
        pass


def pytest_sessionstart(session: pytest.Session) -> None:
    """Training and generation progress goes to pytest's terminal: one updating line per phase on a TTY, a line
    per phase start and end elsewhere (CI logs), nothing but warnings under -q. (Not in pytest_configure: the
    terminal reporter registers itself there, possibly after this conftest.)"""
    config = session.config
    if config.pluginmanager.get_plugin("terminalreporter") is None:
        return
    stream = _TerminalStream(config)
    config.stash[_previous_display] = progress.install(
        progress.Display(stream=stream, live=stream.isatty(), quiet=config.get_verbosity() < 0))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _previous_display in config.stash:
        progress.install(config.stash[_previous_display])



def _tasks(config: pytest.Config) -> list[str]:
    names = list(config.getoption("tasks"))
    return names + ["jsonl"] if config.getoption("jsonl") and "jsonl" not in names else names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per task x model, with plain ids such as 'spider-smollm2-135m-lora' (stable for diffs).

    Pairs whose model calls a paid API carry the `paid` marker, and pairs that need CUDA (8-bit/4-bit loading) the
    `gpu` marker: without --run-paid / --run-gpu they are skipped whole, never half-run.
    """
    if "pair" in metafunc.fixturenames:
        config = metafunc.config
        params = [pytest.param((t, m), id=f"{t}-{m}", marks=_marks(m, config))
                  for t in _tasks(config) for m in config.getoption("models")]
        metafunc.parametrize("pair", params)
    if "serving_pair" in metafunc.fixturenames:  # weights that run here; an API serves itself
        config = metafunc.config
        entries = [catalog.get(m) for m in config.getoption("models")]
        params = [pytest.param((t, e.name), id=f"{t}-{e.name}", marks=[pytest.mark.serving, *_marks(e.name, config)])
                  for t in _tasks(config) for e in entries if backend_for(e).runs_here(e)]
        metafunc.parametrize("serving_pair", params or [pytest.param(None, id="no-local-model", marks=pytest.mark.skip(
            reason="no selected model runs here: the serving benchmark serves local models (an API serves itself)"))])


def _marks(model_name: str, config: pytest.Config) -> list[pytest.MarkDecorator]:
    entry = catalog.get(model_name)
    names = backend_for(entry).marks(entry, config.getoption("openai_base_url"))
    return [getattr(pytest.mark, name) for name in sorted(names)]


def settings_from(config: pytest.Config) -> Settings:
    """The run's Settings from its options (resolved once per session)."""
    return settings_from_options(option_values(vars(config.option)), allow_paid=config.getoption("run_paid"))


_tasks_by_name = pytest.StashKey[dict[str, Task]]()


def task_from(config: pytest.Config, name: str) -> Task:
    """The task `name`, built once per session (a JSONL task reads its folder when built)."""
    cache = config.stash.setdefault(_tasks_by_name, {})
    if name not in cache:
        cache[name] = get_task(name, jsonl_folder=config.getoption("jsonl"), jsonl_scorer=config.getoption("jsonl_scorer"))
    return cache[name]


def thresholds_file(config: pytest.Config):
    from benchmarks import thresholds

    return config.getoption("thresholds") or thresholds.THRESHOLDS_FILE


def pytest_collection_finish(session: pytest.Session) -> None:
    """Check every input of the selected pairs before the first test loads a model: one usage error (exit 4)
    listing every problem, instead of a failure after training."""
    pairs = [item.callspec.params["pair"] for item in session.items
             if hasattr(item, "callspec") and "pair" in item.callspec.params]
    if not pairs:
        return
    from benchmarks import preflight
    from models.errors import FtbenchError

    config = session.config
    try:
        found = preflight.problems(pairs, settings_from(config), lambda name: task_from(config, name),
                                   thresholds_file(config))
    except FtbenchError as err:  # the options themselves (--data, --prices) are unusable
        found = [str(err)]
    if found:
        raise pytest.UsageError(f"ftbench: {len(found)} problem(s) with the inputs; nothing was trained, generated "
                                f"or recorded:\n  - " + "\n  - ".join(found))


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return settings_from(pytestconfig)


@pytest.fixture(scope="session")
def serving_options(pytestconfig: pytest.Config):
    from benchmarks.serving import ServingOptions

    return ServingOptions(latency_slo_s=pytestconfig.getoption("latency_slo"))


@pytest.fixture(scope="session")
def task_for(pytestconfig: pytest.Config):
    return lambda name: task_from(pytestconfig, name)


@pytest.fixture(scope="session")
def prepared_for(settings: Settings):
    """Loads (and for LoRA entries trains or reuses) each model once; local base models are shared across tasks.

    API entries are prepared per task: their cost guard estimates that task's requests.
    """
    cache: dict[tuple[str, str], PreparedModel] = {}

    def get(entry: catalog.CatalogEntry | catalog.OpenAIEntry, task: Task) -> PreparedModel:
        key = (entry.name, task.name if backend_for(entry).prepared_per_task(entry) else "*")
        if key not in cache:
            cache[key] = prepare_model(entry, task, settings)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def baseline_records(pytestconfig: pytest.Config) -> dict | None:
    """Records of the --baseline run by (task, model), or None without --baseline."""
    path = pytestconfig.getoption("baseline")
    if path is None:
        return None
    from benchmarks.runs import load_records

    return load_records(path)
