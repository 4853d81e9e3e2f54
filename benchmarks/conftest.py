"""Benchmark fixtures: the task x model matrix, resolved settings, and models prepared once per session."""

from __future__ import annotations

import pytest

from benchmarks.data import resolve_data
from benchmarks.runner import PreparedModel, Settings, prepare_model
from benchmarks.tasks import Task, get_task
from models import catalog
from models.pricing import load_prices


def _tasks(config: pytest.Config) -> list[str]:
    names = list(config.getoption("tasks"))
    return names + ["jsonl"] if config.getoption("jsonl") and "jsonl" not in names else names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per task x model, with plain ids such as 'spider-smollm2-135m-lora' (stable for diffs)."""
    if "pair" in metafunc.fixturenames:
        pairs = [(t, m) for t in _tasks(metafunc.config) for m in metafunc.config.getoption("models")]
        metafunc.parametrize("pair", pairs, ids=[f"{t}-{m}" for t, m in pairs])


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    opt = pytestconfig.getoption
    return Settings(data=resolve_data(opt("data")), limit=opt("limit"), prices=load_prices(opt("prices")),
                    batch_size=opt("batch_size"), max_new_tokens=opt("max_new_tokens"))


@pytest.fixture(scope="session")
def task_for(pytestconfig: pytest.Config):
    cache: dict[str, Task] = {}

    def get(name: str) -> Task:
        if name not in cache:
            cache[name] = get_task(name, jsonl_folder=pytestconfig.getoption("jsonl"),
                                   jsonl_scorer=pytestconfig.getoption("jsonl_scorer"))
        return cache[name]

    return get


@pytest.fixture(scope="session")
def prepared_for(settings: Settings):
    """Loads (and for LoRA entries trains or reuses) each model once; base models are shared across tasks."""
    cache: dict[tuple[str, str], PreparedModel] = {}

    def get(entry: catalog.CatalogEntry, task: Task) -> PreparedModel:
        key = (entry.name, task.name if entry.finetuned else "*")
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
    from benchmarks.diff import load_records

    return load_records(path)
