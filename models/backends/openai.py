"""Chat models behind an OpenAI-style API: OpenAI itself (token-priced, optionally fine-tuned by a job) and any
OpenAI-compatible server (vLLM, `transformers serve`; free, priced by this machine's time).

Every paid step is estimated and guarded (--run-paid, --max-cost) before the first call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.backends.base import (BackendSettings, PreparedModel, TrainingData, Workload, generation_machine_cost,
                                  with_prediction_cache)
from models.base import Completion, GenerationConfig, Model, fingerprint_rows
from models.money import usd
from models.pricing import Hardware, PriceTable, token_cost


@dataclass(frozen=True)
class OpenAISettings:
    """Options of the OpenAI backends."""

    base_url: str | None = None
    """API root of the 'openai-compatible' entry (--openai-base-url; else $OPENAI_BASE_URL)."""
    model: str | None = None
    """Served model name of the 'openai-compatible' entry (--openai-model; else $FTBENCH_OPENAI_MODEL)."""
    epochs: int | None = None
    """Override of the catalog's per-task epochs for fine-tuning jobs (--openai-epochs)."""
    max_concurrency: int | None = None
    """Chat requests in flight at once (--openai-concurrency; None: 8 for OpenAI, 2 for any other server)."""
    timeout_s: float = 60.0
    """Seconds per attempt of a chat request (--openai-timeout); an attempt past it is abandoned and retried."""
    max_retries: int = 5
    """Retries of a failed chat request (--openai-max-retries): 429, 5xx, timeouts, malformed answers."""
    poll_interval_s: float = 20.0
    """Seconds between status checks of a running fine-tuning job."""


class OpenAIBackend:
    """`models.catalog.OpenAIEntry`. `make_client` / `http_client_factory` let tests put a local transport under the
    openai client (OpenAI's fine-tuning API has no local stand-in)."""

    def __init__(self, make_client: Callable[[], Any] | None = None,
                 http_client_factory: Callable[[], Any] | None = None):
        self.make_client = make_client
        self.http_client_factory = http_client_factory

    def prepare(self, entry, work: Workload, settings: BackendSettings) -> PreparedModel:
        """The chat model of the entry, its fine-tuning job run or reused first. Before any paid call, the new spend
        of this benchmark (the job, unless one exists, plus the requests the prediction cache cannot answer) is
        checked against --run-paid and --max-cost."""
        from models.finetune.openai_plan import Budget

        base_url = entry.resolve_base_url(settings.openai.base_url)
        budget = Budget(settings.allow_paid, settings.max_cost_usd)
        if entry.finetune is not None:
            return self._prepare_finetuned(entry, work, settings, base_url, budget)
        model = self._chat_model(entry, entry.resolve_model_id(settings.openai.model), base_url, None, settings,
                                 price_family=price_family_of(entry, base_url, settings))
        if model.price_family:
            config, prompts = work.config, work.prompts()
            budget.check(eval_spend(model, prompts, config, settings.prices),
                         f"{entry.name} on {work.task}: {len(prompts)} requests (upper bound: "
                         f"{config.max_new_tokens} output tokens each)")
        return PreparedModel(model, None)

    def _prepare_finetuned(self, entry, work: Workload, settings: BackendSettings, base_url: str,
                           budget) -> PreparedModel:
        """Plan the job offline, guard job + evaluation together, then run (or reuse) the job."""
        from models.finetune import openai_ft
        from models.openai_api import sync_client

        data = work.training()
        train_rows, validation_rows = data.chat_rows("train"), data.chat_rows("validation")
        spec = job_spec(entry, work.task, len(train_rows), settings)
        plan = openai_ft.plan_finetune(train_rows, validation_rows, spec, settings.prices)
        config = work.config
        finished = plan.finished_model  # a finished job's model: the cache then tells which requests are still due
        probe = self._chat_model(entry, finished, base_url, _job_fingerprint(plan, finished),
                                 settings) if finished else None
        prompts = work.prompts()
        eval_usd = eval_spend(probe, prompts, config, settings.prices, encoding=spec.encoding,
                              family=spec.price_family, finetuned=True)
        if plan.new_spend_usd + eval_usd > 0:
            job_usd, eval_usd_text = usd(plan.new_spend_usd, eval_usd)
            budget.check(plan.new_spend_usd + eval_usd,
                         f"{entry.name} on {work.task}: fine-tuning {job_usd} "
                         f"({plan.estimate.trained_tokens:,} trained tokens) + evaluation {eval_usd_text} "
                         f"(upper bound: {len(prompts)} requests x {config.max_new_tokens} output tokens)")
        make_client = self.make_client or functools.partial(sync_client, max_retries=settings.openai.max_retries,
                                                            timeout_s=settings.openai.timeout_s)
        result = openai_ft.run_finetune(plan, make_client, budget,
                                        poll_interval_s=settings.openai.poll_interval_s, progress=settings.progress)
        model = self._chat_model(entry, result.model_id, base_url, _job_fingerprint(plan, result.model_id), settings)
        return PreparedModel(model, result.info | {"cached": result.reused} | training_info(data, train_rows,
                                                                                           validation_rows))

    def _chat_model(self, entry, model_id: str, base_url: str, fingerprint: dict[str, Any] | None,
                    settings: BackendSettings, price_family: str | None = None) -> Model:
        from models.openai_api import Endpoint, OpenAIChatModel

        endpoint = Endpoint(model_id, base_url, max_concurrency=settings.openai.max_concurrency,
                            max_retries=settings.openai.max_retries, timeout_s=settings.openai.timeout_s)
        model = OpenAIChatModel(entry.name, endpoint, fingerprint, price_family=price_family or entry.price_family,
                                progress=settings.progress, http_client_factory=self.http_client_factory)
        return with_prediction_cache(model, settings)

    def eval_cost(self, model: Model, entry, completions: Sequence[Completion], hardware: Hardware,
                  settings: BackendSettings) -> tuple[float | None, str]:
        """Token-priced models: prompt and completion tokens x the prices of their kind (base or fine-tuned). A free
        server: this machine's time, the requests in flight overlapping."""
        family = getattr(model, "price_family", None)
        if not family:
            return generation_machine_cost(completions, hardware, settings.prices, model.endpoint.max_concurrency)
        finetuned = is_finetuned(model, entry)
        price = settings.prices.token_prices(family, finetuned=finetuned)
        prompt_tokens = sum(c.usage.prompt_tokens for c in completions)
        completion_tokens = sum(c.usage.completion_tokens for c in completions)
        cost = token_cost(prompt_tokens, price["input"]) + token_cost(completion_tokens, price["output"])
        kind = "fine-tuned" if finetuned else "base"
        return cost, (f"tokens: {prompt_tokens} in x ${price['input']}/1M + {completion_tokens} out x "
                      f"${price['output']}/1M ({family}, {kind} model prices)")

    def training_cost(self, training: dict[str, Any], prices: PriceTable) -> tuple[float | None, str | None]:
        """A job's trained tokens x the fine-tuned training price."""
        price = prices.token_prices(training["price_family"], finetuned=True)["training"]
        return (token_cost(training["trained_tokens"], price),
                f"trained tokens {training['trained_tokens']} x ${price}/1M ({training['price_family']})")

    def marks(self, entry, openai_base_url: str | None) -> set[str]:
        return {"paid"} if entry.is_paid(openai_base_url) else set()

    def prepared_per_task(self, entry) -> bool:
        return True  # the cost guard estimates each task's requests

    def cache_folders(self, entries: Sequence[Any]) -> dict[Path, str]:
        if not any(e.finetuned for e in entries):
            return {}
        from models.finetune.openai_ft import jobs_dir

        return {jobs_dir(): "FTBENCH_OPENAI_JOBS"}

    def runs_here(self, entry) -> bool:
        return False

    def server(self, entry, prepared: PreparedModel, device: str):
        return None  # served by its provider


def training_info(data: TrainingData, rows: list[dict], validation: list[dict]) -> dict[str, Any]:
    """How the job's training file was split, for the record."""
    return {"train_split": data.split, "validation": data.validation_how, "train_examples": len(rows),
            "validation_examples": len(validation), "train_fingerprint": fingerprint_rows(rows)}


def job_spec(entry, task: str, n_train: int, settings: BackendSettings, epochs: int | None = None):
    """The job for this entry and task: base snapshot, and epochs from the override, the catalog, or OpenAI's rule."""
    from models.finetune.openai_plan import JobSpec, default_epochs

    tune = entry.finetune
    chosen = epochs or settings.openai.epochs or tune.epochs_by_task.get(task) or default_epochs(n_train)
    return JobSpec(base_model=tune.base_snapshot(), epochs=chosen, price_family=tune.price_family,
                   max_tokens_per_example=tune.max_tokens_per_example, suffix=f"ftbench-{task}")


def _job_fingerprint(plan, model_id: str) -> dict[str, Any]:
    return {"base": plan.spec.base_model, "adapter": f"openai:{model_id}", "recipe": plan.spec.to_json()}


def price_family_of(entry, base_url: str, settings: BackendSettings) -> str | None:
    """For a base entry at api.openai.com: the price family of its model id, in the section of its kind (a base
    id -> [openai.base.*]; an 'ft:' id -> [openai.finetuned.*]); None off OpenAI: free."""
    from models.errors import ConfigError
    from models.openai_api import is_openai_url

    if not is_openai_url(base_url):
        return None
    model_id = entry.resolve_model_id(settings.openai.model)
    kind = "finetuned" if is_finetuned_id(model_id) else "base"
    family = settings.prices.family_of(model_id, finetuned=kind == "finetuned")
    if family is None:
        raise ConfigError(f"no price for {model_id!r} in {settings.prices.source}; add [openai.{kind}.\"{model_id}\"] "
                          f"with input and output USD per 1M tokens so its cost can be estimated and guarded.")
    return family


def is_finetuned_id(model_id: str) -> bool:
    """OpenAI names every fine-tuned model 'ft:<base>:<org>:<suffix>:<id>'; it is billed at fine-tuned rates."""
    return model_id.startswith("ft:")


def is_finetuned(model: Model | None, entry=None) -> bool:
    """A fine-tuned entry, or a base entry serving a fine-tuned model id: the price table's finetuned section."""
    endpoint = getattr(model, "endpoint", None)
    return bool(getattr(entry, "finetuned", False)) or (endpoint is not None and is_finetuned_id(endpoint.model))


def eval_spend(model: Model | None, prompts, config: GenerationConfig, prices: PriceTable, *,
               encoding: str | None = None, family: str | None = None, finetuned: bool | None = None) -> float:
    """Upper bound of what generating `prompts` costs now: the prompts the cache cannot answer, each at its exact
    input tokens plus max_new_tokens of output, at the prices of the model's kind (base or fine-tuned)."""
    from models.openai_api import estimate_requests
    from models.tokens import encoding_for

    family = family or getattr(model, "price_family", None)
    if family is None:
        return 0.0
    finetuned = is_finetuned(model) if finetuned is None else finetuned
    pending = [prompts[i] for i in model.misses(prompts, config)] if hasattr(model, "misses") else list(prompts)
    encoding = encoding or encoding_for(model.endpoint.model)
    messages = [p.api_messages() for p in pending]
    return estimate_requests(messages, [config.max_new_tokens] * len(pending), encoding,
                             prices.token_prices(family, finetuned=finetuned)).usd
