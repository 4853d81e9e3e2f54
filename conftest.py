"""ftbench's pytest options (defined in benchmarks/options.py, shared with the `ftbench` commands), markers and
report header.

Kept light: a bare `pytest` (the harness's own tests) loads this too, so nothing heavy is imported here.
"""

from __future__ import annotations

import os

import pytest

from benchmarks.options import add_to_pytest
from models.money import DEFAULT_MAX_COST_USD  # noqa: F401  (tests/test_pricing.py checks the one default here)

OPT_IN_MARKERS = {"gpu": "--run-gpu", "paid": "--run-paid", "slow": "--run-slow", "serving": "--run-serving"}


def pytest_addoption(parser: pytest.Parser) -> None:
    add_to_pytest(parser.getgroup("ftbench", "ftbench: fine-tuning benchmarks"))


def pytest_configure(config: pytest.Config) -> None:
    from models import catalog
    from models.errors import ConfigError

    for name in config.getoption("models"):
        try:
            catalog.get(name)
        except ConfigError as err:
            raise pytest.UsageError(str(err)) from err
    try:
        from benchmarks.data import resolve_data

        resolve_data(config.getoption("data"))
    except ConfigError as err:
        raise pytest.UsageError(str(err)) from err


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Paid, GPU, slow and serving tests are opt-in: skipped with a reason that names the flag."""
    for marker, flag in OPT_IN_MARKERS.items():
        if config.getoption(flag.lstrip("-").replace("-", "_")):
            continue
        skip = pytest.mark.skip(reason=f"marked {marker}: pass {flag} to run it")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> list[str]:
    from models.precision import native_precision

    opt = config.getoption
    tasks = opt("tasks") + (["jsonl"] if opt("jsonl") else [])
    opt_ins = [flag for flag in OPT_IN_MARKERS.values() if opt(flag.lstrip("-").replace("-", "_"))]
    return [
        f"ftbench: models={','.join(opt('models'))} tasks={','.join(tasks)} data={opt('data')} "
        f"limit={opt('limit') or 'all'} batch_size={opt('batch_size')} max_new_tokens={opt('max_new_tokens')}",
        f"ftbench: prices={opt('prices') or 'default'} recipe={opt('recipe') or 'catalog'} "
        f"baseline={opt('baseline') or 'none'} "
        f"opt-ins={','.join(opt_ins) or 'none'}",
        f"ftbench: max_cost=${opt('max_cost'):.2f} prediction_cache={'off' if opt('no_prediction_cache') else 'on'} "
        f"openai_base_url={opt('openai_base_url') or os.environ.get('OPENAI_BASE_URL') or 'none'} "
        f"openai_model={opt('openai_model') or os.environ.get('FTBENCH_OPENAI_MODEL') or 'none'} "
        f"openai_epochs={opt('openai_epochs') or 'catalog'} openai_concurrency={opt('openai_concurrency')}",
        "ftbench: precision auto -> {} ({})".format(*native_precision("auto")),
    ]
