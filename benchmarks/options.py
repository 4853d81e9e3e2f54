"""ftbench's options, defined once: `pytest benchmarks` (group "ftbench") and the `ftbench` commands read this table.

Each `Option` says its flag, how its text is parsed, its default, its help and who offers it (`used_by`). Two
adapters put the table on a parser: `add_to_pytest(group)` for the root conftest.py's `pytest_addoption`, and
`add_to_argparse(parser, names)` for a command. A bad value is refused by the same parser on both sides
(`argparse.ArgumentTypeError`): pytest turns it into a usage error (exit 4), argparse into exit 2.
`settings_from_options` builds the run's Settings from either side's values.

No option has a different default in pytest and in a command: a command that does not offer an option (say
`--batch-size` in `ftbench finetune`) runs with the table's default, which is also the Settings default.

Kept light: the root conftest.py imports this on every `pytest` run, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.tasks.scorers import SCORERS
from models.money import DEFAULT_MAX_COST_USD

if TYPE_CHECKING:
    from benchmarks.runner import Settings

PYTEST, FINETUNE, ESTIMATE = "pytest", "finetune", "estimate"

DEFAULT_MODELS = "smollm2-135m,smollm2-135m-lora"
DEFAULT_TASKS = "spider,viggo"


# Parsers: text -> value, or argparse.ArgumentTypeError naming the value and what was expected.

def _checked(convert: Callable[[str], Any], accepts: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):  # comparisons with NaN are false: NaN is refused too
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _checked(int, lambda v: v > 0, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
positive_seconds = _checked(float, lambda v: 0 < v < math.inf, "a positive number of seconds")
share = _checked(float, lambda v: 0 <= v <= 1, "a share between 0 and 1")
usd = _checked(lambda text: float(text.lstrip("$")), lambda v: 0 <= v < math.inf,  # a NaN cap would never refuse
               "an amount in USD >= 0")
http_url = _checked(str, lambda v: v.startswith(("http://", "https://")),
                    "an http(s) URL such as http://127.0.0.1:8000/v1")


def name_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of names, got {text!r}")
    return names


@dataclass(frozen=True)
class Option:
    """One option: in the table, flag, help, default, parse and metavar are given in that order."""

    flag: str
    help: str
    """What it does; the default is appended as `(default: ...)`."""
    default: Any = None
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    choices: Collection[str] | None = None
    action: str | type[argparse.Action] | None = None
    shown_default: str | None = None
    """The default in words, when the value alone does not say it (None: the value, unless None or False)."""
    used_by: frozenset[str] = frozenset({PYTEST})
    aliases: tuple[str, ...] = ()
    """A command's own spellings, shown before the flag (pytest offers the flag only)."""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def help_text(self) -> str:
        shown = self.shown_default
        if shown is None and self.default is not None and self.default is not False:
            shown = f"{self.default:g}" if isinstance(self.default, float) else str(self.default)
        return self.help if shown is None else f"{self.help} (default: {shown})"

    def keywords(self) -> dict[str, Any]:
        """`add_argument` keywords (argparse rejects a type or metavar on flags, so unset ones are left out)."""
        given = {"type": self.parse, "default": self.default, "metavar": self.metavar, "choices": self.choices,
                 "action": self.action, "help": self.help_text()}
        return {key: value for key, value in given.items() if value is not None}


PYTEST_AND_FINETUNE = frozenset({PYTEST, FINETUNE})
PYTEST_AND_ESTIMATE = frozenset({PYTEST, ESTIMATE})
ALL_SIDES = frozenset({PYTEST, FINETUNE, ESTIMATE})
FINETUNE_ONLY = frozenset({FINETUNE})

OPTIONS: tuple[Option, ...] = (
    Option("--models", "comma-separated catalog names to benchmark", name_list(DEFAULT_MODELS), name_list, "NAMES",
           shown_default=DEFAULT_MODELS),
    Option("--tasks", "comma-separated tasks ('jsonl' is added by --jsonl)", name_list(DEFAULT_TASKS), name_list,
           "NAMES", shown_default=DEFAULT_TASKS),
    Option("--data", "'fixtures' (shipped), 'hub' (Hugging Face, needs network) or a directory in the seed's layout, "
                     "e.g. ../shared/data", "fixtures", metavar="SOURCE", used_by=ALL_SIDES),
    Option("--limit", "evaluate only the first N eval rows of each task", None, positive_int, "N", shown_default="all"),
    Option("--jsonl", "your own task 'jsonl': a folder with train.jsonl and eval.jsonl (prompt/completion or chat "
                      "rows)", None, Path, "FOLDER", used_by=ALL_SIDES),
    Option("--jsonl-scorer", "scorer for the --jsonl task", "exact", choices=SCORERS),  # registered scorers are choices
    Option("--prices", "price table TOML", None, Path, "FILE", shown_default="$FTBENCH_PRICES, else models/prices.toml",
           used_by=ALL_SIDES),
    Option("--batch-size", "prompts decoded together by local models", 8, positive_int, "N"),
    Option("--max-new-tokens", "generation limit per item", 100, positive_int, "N", shown_default="100, as the seed"),
    Option("--recipe", "JSON of LoRA recipe fields (models/finetune/recipe.py) overriding every LoRA entry's recipe",
           None, Path, "FILE", shown_default="the catalog's", used_by=PYTEST_AND_FINETUNE),
    Option("--thresholds", "accuracy thresholds TOML", None, Path, "FILE", shown_default="fixtures/thresholds.toml"),
    Option("--baseline", "pytest-benchmark JSON of an earlier run: each test also fails when its own pair regressed "
                         "against it (ftbench diff's default rules)", None, Path, "FILE"),
    Option("--max-cost", "refuse paid work (OpenAI fine-tuning + evaluation) whose new spend is estimated above this, "
                         "before any call", DEFAULT_MAX_COST_USD, usd, "USD",
           shown_default=f"{DEFAULT_MAX_COST_USD:.2f}", used_by=PYTEST_AND_FINETUNE),
    Option("--no-prediction-cache", "generate every answer again (local models) and resend every API request, "
                                    "instead of answering repeats from the prediction cache", False,
           action="store_true",
           shown_default="cache on, under $FTBENCH_PREDICTION_CACHE or ~/.cache/ftbench/predictions"),
    Option("--openai-base-url", "API root for the openai-compatible entry, e.g. http://127.0.0.1:8000/v1; paid only "
                                "when it is api.openai.com", None, http_url, "URL", shown_default="$OPENAI_BASE_URL"),
    Option("--openai-model", "model of the openai-compatible entry: the name its server serves, or the OpenAI model id "
                             "ftbench estimate prices, e.g. gpt-4o-mini or ft:...", None, metavar="NAME",
           shown_default="$FTBENCH_OPENAI_MODEL in benchmarks, none in ftbench estimate", used_by=PYTEST_AND_ESTIMATE),
    Option("--openai-epochs", "epochs of OpenAI fine-tuning jobs", None, positive_int, "N",
           shown_default="per task in the catalog, the seed's spider=3, viggo=2; other tasks OpenAI's auto rule",
           used_by=PYTEST_AND_ESTIMATE, aliases=("--epochs",)),
    Option("--openai-concurrency", "chat requests in flight at once; raise it for vLLM", None, positive_int, "N",
           shown_default="8 for api.openai.com, 2 for any other server"),
    Option("--openai-timeout", "seconds per attempt of an API request before it is abandoned and retried", 60.0,
           positive_seconds, "SECONDS", used_by=PYTEST_AND_FINETUNE),
    Option("--openai-max-retries", "retries of an API request after a 429, 5xx, timeout, connection error or "
                                   "malformed answer", 5, non_negative_int, "N", used_by=PYTEST_AND_FINETUNE),
    Option("--max-error-rate", "fail a benchmark when more than this share of items (0-1) got an error (request "
                               "failed, malformed answer, scorer error) instead of an answer and a score", 0.0, share,
           "RATE"),
    Option("--run-gpu", "run tests marked gpu (needs CUDA)", False, action="store_true"),
    Option("--run-paid", "run tests marked paid (spends money; needs OPENAI_API_KEY)", False, action="store_true"),
    Option("--run-slow", "run tests marked slow (minutes of CPU work)", False, action="store_true"),
    Option("--run-serving", "run the serving benchmarks (test_serving: a real model server per local pair, swept at "
                            "rising concurrency; minutes each)", False, action="store_true"),
    Option("--latency-slo", "p95 end-to-end latency a serving level must stay within to count as sustainable; the "
                            "deploy cost is priced at the best such level", 10.0, positive_seconds, "SECONDS"),
    # How LoRA training trades memory and time for safety; none of it changes what the adapter learns.
    Option("--checkpoint-every", "save a resumable checkpoint every N optimizer steps (0: never)", 20, non_negative_int,
           "STEPS", used_by=FINETUNE_ONLY),
    Option("--gradient-checkpointing", "recompute activations in the backward pass", None,
           action=argparse.BooleanOptionalAction,
           shown_default="on CUDA only; on CPU micro-batches bound the memory at no extra compute",
           used_by=FINETUNE_ONLY),
    Option("--micro-batch-size", "pairs per forward/backward pass; the gradient stays the whole batch's", None,
           positive_int, "N", shown_default="4 on CPU without checkpointing, else the whole batch",
           used_by=FINETUNE_ONLY),
)

BY_NAME: dict[str, Option] = {option.flag.removeprefix("--"): option for option in OPTIONS}
BY_DEST: dict[str, Option] = {option.dest: option for option in OPTIONS}


def offered_by(side: str) -> list[str]:
    """Names of the options `side` (pytest, finetune, estimate) offers, in the table's order."""
    return [name for name, option in BY_NAME.items() if side in option.used_by]


def add_to_pytest(group) -> None:
    """Every option pytest offers, on `group` (a pytest.OptionGroup)."""
    for name in offered_by(PYTEST):
        group.addoption(BY_NAME[name].flag, **BY_NAME[name].keywords())


def add_to_argparse(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """The named options (e.g. `offered_by("estimate")`) on a command's parser."""
    for name in names:
        option = BY_NAME[name]
        parser.add_argument(*option.aliases, option.flag, dest=option.dest, **option.keywords())


def option_values(values: Mapping[str, Any]) -> Callable[[str], Any]:
    """Reads an option by dest from parsed values (`vars(args)`, `vars(config.option)`); an option that side does not
    offer reads as the table's default."""
    return lambda dest: values[dest] if dest in values else BY_DEST[dest].default


def settings_from_options(get: Callable[[str], Any], *, allow_paid: bool = False) -> Settings:
    """The run's Settings from option values read by dest (`option_values`); `allow_paid` is pytest's --run-paid or
    a command's --yes."""
    from benchmarks.data import resolve_data
    from benchmarks.runner import OpenAISettings, Settings, TrainSettings
    from models.pricing import load_prices

    recipe = get("recipe")
    openai = OpenAISettings(base_url=get("openai_base_url"), model=get("openai_model"), epochs=get("openai_epochs"),
                            max_concurrency=get("openai_concurrency"), timeout_s=get("openai_timeout"),
                            max_retries=get("openai_max_retries"))
    train = TrainSettings(checkpoint_every=get("checkpoint_every"), micro_batch_size=get("micro_batch_size"),
                          gradient_checkpointing=get("gradient_checkpointing"),
                          recipe_file=str(recipe) if recipe else None)
    return Settings(data=resolve_data(get("data")), limit=get("limit"), prices=load_prices(get("prices")),
                    batch_size=get("batch_size"), max_new_tokens=get("max_new_tokens"), allow_paid=allow_paid,
                    max_cost_usd=get("max_cost"), prediction_cache=not get("no_prediction_cache"),
                    max_error_rate=get("max_error_rate"), openai=openai, train=train)
