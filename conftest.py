"""ftbench's pytest options, markers and report header (one group, one `--` namespace, typed parsers).

Kept light: a bare `pytest` (the harness's own tests) loads this too, so nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import pytest

from models.money import DEFAULT_MAX_COST_USD  # standard library only: keeps this file light

DEFAULT_MODELS = "smollm2-135m,smollm2-135m-lora"
DEFAULT_TASKS = "spider,viggo"
OPT_IN_MARKERS = {"gpu": "--run-gpu", "paid": "--run-paid", "slow": "--run-slow"}


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a share between 0 and 1, got {text!r}")
    return value


def _usd(text: str) -> float:
    value = float(text.lstrip("$"))
    if not 0 <= value < math.inf:  # NaN too: a NaN cap would never refuse
        raise argparse.ArgumentTypeError(f"expected an amount in USD >= 0, got {text!r}")
    return value


def _http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http(s) URL such as http://127.0.0.1:8000/v1, got {text!r}")
    return text


def _name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return names


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftbench", "ftbench: fine-tuning benchmarks")
    group.addoption("--models", type=_name_list, default=_name_list(DEFAULT_MODELS), metavar="NAMES",
                    help=f"comma-separated catalog names to benchmark (default: {DEFAULT_MODELS})")
    group.addoption("--tasks", type=_name_list, default=_name_list(DEFAULT_TASKS), metavar="NAMES",
                    help=f"comma-separated tasks (default: {DEFAULT_TASKS}; 'jsonl' is added by --jsonl)")
    group.addoption("--data", default="fixtures", metavar="SOURCE",
                    help="'fixtures' (shipped, default), 'hub' (Hugging Face, needs network) or a directory in the "
                         "seed's layout, e.g. ../shared/data")
    group.addoption("--limit", type=_positive_int, default=None, metavar="N",
                    help="evaluate only the first N eval rows of each task (default: all)")
    group.addoption("--jsonl", type=Path, default=None, metavar="FOLDER",
                    help="your own task: a folder with train.jsonl and eval.jsonl (prompt/completion or chat rows)")
    group.addoption("--jsonl-scorer", choices=["exact", "sql", "mr"], default="exact",
                    help="scorer for the --jsonl task (default: exact)")
    group.addoption("--prices", type=Path, default=None, metavar="FILE",
                    help="price table TOML (default: $FTBENCH_PRICES, else models/prices.toml)")
    group.addoption("--batch-size", type=_positive_int, default=8, metavar="N",
                    help="prompts decoded together by local models (default: 8)")
    group.addoption("--max-new-tokens", type=_positive_int, default=100, metavar="N",
                    help="generation limit per item (default: 100, as the seed)")
    group.addoption("--recipe", type=Path, default=None, metavar="FILE",
                    help="JSON of LoRA recipe fields overriding every LoRA entry's recipe (as ftbench finetune --recipe)")
    group.addoption("--thresholds", type=Path, default=None, metavar="FILE",
                    help="accuracy thresholds TOML (default: fixtures/thresholds.toml)")
    group.addoption("--baseline", type=Path, default=None, metavar="FILE",
                    help="pytest-benchmark JSON of an earlier run: each test also fails when its own pair regressed "
                         "against it (ftbench diff's default rules)")
    group.addoption("--max-cost", type=_usd, default=DEFAULT_MAX_COST_USD, metavar="USD",
                    help=f"refuse a paid benchmark whose new spend (OpenAI fine-tuning + evaluation) is estimated "
                         f"above this, before any call (default: {DEFAULT_MAX_COST_USD:.2f})")
    group.addoption("--no-prediction-cache", action="store_true",
                    help="generate every answer again (local models) and resend every API request, instead of answering "
                         "repeats from the prediction cache (default: cache on, under $FTBENCH_PREDICTION_CACHE or "
                         "~/.cache/ftbench/predictions)")
    group.addoption("--openai-base-url", type=_http_url, default=None, metavar="URL",
                    help="API root for the openai-compatible entry, e.g. http://127.0.0.1:8000/v1 "
                         "(default: $OPENAI_BASE_URL); paid only when it is api.openai.com")
    group.addoption("--openai-model", default=None, metavar="NAME",
                    help="model name the openai-compatible server serves (default: $FTBENCH_OPENAI_MODEL)")
    group.addoption("--openai-epochs", type=_positive_int, default=None, metavar="N",
                    help="epochs of OpenAI fine-tuning jobs (default: per task in the catalog, the seed's "
                         "spider=3, viggo=2; other tasks OpenAI's auto rule)")
    group.addoption("--openai-concurrency", type=_positive_int, default=None, metavar="N",
                    help="chat requests in flight at once (default: 8 for api.openai.com, 2 for any other server; "
                         "raise it for vLLM)")
    group.addoption("--openai-timeout", type=_positive_seconds, default=60.0, metavar="SECONDS",
                    help="seconds per attempt of a chat request before it is abandoned and retried (default: 60)")
    group.addoption("--openai-max-retries", type=_non_negative_int, default=5, metavar="N",
                    help="retries of a chat request after a 429, 5xx, timeout or malformed answer (default: 5)")
    group.addoption("--max-error-rate", type=_rate, default=0.0, metavar="RATE",
                    help="fail a benchmark when more than this share of items (0-1) got an error (request failed, "
                         "malformed answer, scorer error) instead of an answer and a score (default: 0)")
    group.addoption("--run-gpu", action="store_true", help="run tests marked gpu (needs CUDA)")
    group.addoption("--run-paid", action="store_true", help="run tests marked paid (spends money; needs OPENAI_API_KEY)")
    group.addoption("--run-slow", action="store_true", help="run tests marked slow (minutes of CPU work)")


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
    """Paid, GPU and slow tests are opt-in: skipped with a reason that names the flag."""
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
