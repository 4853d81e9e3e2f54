"""The walk of one benchmark: prepare the model (train or reuse its adapter or OpenAI job), generate, score, record.

pytest's benchmark test and the `ftbench` command share these functions, so both measure the same thing.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import record as rec
from benchmarks.data import DataSource, fingerprint_rows
from benchmarks.tasks import Example, Score, Task, chat_rows, training_pairs, training_split
from models.base import Completion, GenerationConfig, Model
from models.catalog import CatalogEntry, OpenAIEntry
from models.money import DEFAULT_MAX_COST_USD, usd
from models.pricing import Hardware, PriceTable, detect_hardware, devices_billed, hardware_cost, token_cost


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


@dataclass(frozen=True)
class TrainSettings:
    """How LoRA fine-tuning runs (none of it changes the adapter)."""

    checkpoint_every: int = 20
    """Resumable checkpoint every N optimizer steps (0: never)."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass (None: the device's default, see models.finetune.lora.RunOptions)."""
    micro_batch_size: int | None = None
    """Pairs per forward/backward pass (None: the device's default); the gradient stays the whole batch's."""
    recipe_file: str | None = None
    """JSON of recipe fields overriding every LoRA entry's recipe (pytest --recipe)."""


@dataclass(frozen=True)
class Settings:
    """Resolved options shared by every benchmark of a run."""

    data: DataSource
    """Where rows come from (`--data`)."""
    limit: int | None
    """Evaluate only the first N eval rows (`--limit`); training uses the train split whatever the limit."""
    prices: PriceTable
    batch_size: int = 8
    max_new_tokens: int = 100
    progress: bool = True
    allow_paid: bool = False
    """Paid API work may run (pytest --run-paid); without it a paid step is refused before any call."""
    max_cost_usd: float = DEFAULT_MAX_COST_USD
    """Refuse a benchmark whose new paid work (training + evaluation) is estimated above this (--max-cost)."""
    prediction_cache: bool = True
    """Answer repeated API requests from the prediction cache (--no-prediction-cache turns it off)."""
    max_error_rate: float = 0.0
    """A benchmark fails when more than this share of its items got an error instead of an answer or a score."""
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    train: TrainSettings = field(default_factory=TrainSettings)


@dataclass(frozen=True)
class PreparedModel:
    model: Model
    training: dict[str, Any] | None
    """What fine-tuning measured (None for base models), plus whether the adapter came from the cache."""


def prepare_model(entry: CatalogEntry | OpenAIEntry, task: Task, settings: Settings) -> PreparedModel:
    """Load a catalog entry; for a fine-tuned entry, train its adapter (or OpenAI job) on the task's train split
    first, or reuse it."""
    if entry.backend == "openai":
        return prepare_openai(entry, task, settings)
    if not entry.finetuned:
        return PreparedModel(_with_prediction_cache(entry.load(), settings), None)
    from models.finetune.lora import RunOptions, finetune  # torch: only for entries trained here

    if settings.train.recipe_file:
        entry = dataclasses.replace(entry, recipe=type(entry.recipe).from_file(settings.train.recipe_file, entry.recipe))
    split = training_split(task, settings.data)
    adapter = finetune(entry.load_base, entry.base_fingerprint(), training_pairs(task, split.train), entry.recipe,
                       validation=training_pairs(task, split.validation), module_names=entry.module_names(),
                       options=RunOptions(checkpoint_every=settings.train.checkpoint_every, progress=settings.progress,
                                          gradient_checkpointing=settings.train.gradient_checkpointing,
                                          micro_batch_size=settings.train.micro_batch_size))
    # The weights' own hash too: a retrained adapter with other weights (another torch, GPU kernels) is another model
    adapter_fingerprint = {"adapter": f"sha256:{adapter.key[:32]}", "adapter_weights": f"sha256:{adapter.weights_sha256}",
                           "recipe": adapter.recipe.to_json()}
    training = adapter.info | {"cached": adapter.cached, "train_split": task.train_split, "validation": split.how,
                               "train_fingerprint": fingerprint_rows([e.fields for e in split.train])}
    return PreparedModel(_with_prediction_cache(entry.load(adapter.path, adapter_fingerprint), settings), training)


def _with_prediction_cache(model: Model, settings: Settings) -> Model:
    """A rerun of an unchanged benchmark generates nothing: answers are keyed by model fingerprint (base, adapter
    hash), prompt, generation parameters and backend version. Misses are stored every 256 items."""
    if not settings.prediction_cache:
        return model
    from models.prediction_cache import CachedModel, PredictionCache

    return CachedModel(model, PredictionCache.default(), save_every=256)


# --- OpenAI entries: fine-tuning job (guarded), chat model, prediction cache ---------------------------------------

def prepare_openai(entry: OpenAIEntry, task: Task, settings: Settings, *, make_client: Callable[[], Any] | None = None,
                   http_client_factory: Callable[[], Any] | None = None) -> PreparedModel:
    """The chat model of an OpenAI entry, its fine-tuning job run or reused first.

    Before any paid call, the new spend of this benchmark (the job, unless one exists, plus the requests the
    prediction cache cannot answer) is estimated and checked against --run-paid and --max-cost.
    `make_client` / `http_client_factory` let tests put a local transport under the openai client.
    """
    from models.finetune.openai_ft import Budget

    base_url = entry.resolve_base_url(settings.openai.base_url)
    budget = Budget(settings.allow_paid, settings.max_cost_usd)
    prompts = [task.prompt(e) for e in eval_examples(task, settings)]
    if entry.finetune is None:
        model = _chat_model(entry, entry.resolve_model_id(settings.openai.model), base_url, None, settings,
                            http_client_factory, price_family=_price_family(entry, base_url, settings))
        if model.price_family:
            config = generation_config(task, settings)
            budget.check(_eval_spend(model, prompts, config, settings),
                         f"{entry.name} on {task.name}: {len(prompts)} requests (upper bound: "
                         f"{config.max_new_tokens} output tokens each)")
        return PreparedModel(model, None)
    return _prepare_openai_finetuned(entry, task, settings, base_url, prompts, budget, make_client,
                                     http_client_factory)


def _prepare_openai_finetuned(entry: OpenAIEntry, task: Task, settings: Settings, base_url: str, prompts,
                              budget, make_client, http_client_factory) -> PreparedModel:
    """Plan the job offline, guard job + evaluation together, then run (or reuse) the job."""
    from models.finetune import openai_ft
    from models.openai_api import sync_client

    train_rows, validation_rows, split_info = openai_training_rows(task, settings)
    spec = openai_job_spec(entry, task, len(train_rows), settings)
    plan = openai_ft.plan_finetune(train_rows, validation_rows, spec, settings.prices)
    config = generation_config(task, settings)
    finished = plan.finished_model  # a finished job's model: the cache then tells which requests are still due
    probe = _chat_model(entry, finished, base_url, _job_fingerprint(plan, finished), settings,
                        http_client_factory) if finished else None
    eval_usd = _eval_spend(probe, prompts, config, settings, encoding=spec.encoding, family=spec.price_family,
                           finetuned=True)
    if plan.new_spend_usd + eval_usd > 0:
        job_usd, eval_usd_text = usd(plan.new_spend_usd, eval_usd)
        budget.check(plan.new_spend_usd + eval_usd,
                     f"{entry.name} on {task.name}: fine-tuning {job_usd} "
                     f"({plan.estimate.trained_tokens:,} trained tokens) + evaluation {eval_usd_text} "
                     f"(upper bound: {len(prompts)} requests x {config.max_new_tokens} output tokens)")
    make_client = make_client or functools.partial(sync_client, max_retries=settings.openai.max_retries,
                                                   timeout_s=settings.openai.timeout_s)
    result = openai_ft.run_finetune(plan, make_client, budget,
                                    poll_interval_s=settings.openai.poll_interval_s, progress=settings.progress)
    model = _chat_model(entry, result.model_id, base_url, _job_fingerprint(plan, result.model_id), settings,
                        http_client_factory)
    return PreparedModel(model, result.info | {"cached": result.reused} | split_info)


def _job_fingerprint(plan, model_id: str) -> dict[str, Any]:
    return {"base": plan.spec.base_model, "adapter": f"openai:{model_id}", "recipe": plan.spec.to_json()}


def openai_training_rows(task: Task, settings: Settings) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(training rows, validation rows, how they were split) in the task's chat format, from the same split the
    LoRA trainer uses (benchmarks.tasks.training_split), so both candidates learn from the same examples."""
    split = training_split(task, settings.data)
    rows, validation = chat_rows(task, split.train), chat_rows(task, split.validation)
    info = {"train_split": task.train_split, "validation": split.how, "train_examples": len(rows),
            "validation_examples": len(validation), "train_fingerprint": fingerprint_rows(rows)}
    return rows, validation, info


def openai_job_spec(entry: OpenAIEntry, task: Task, n_train: int, settings: Settings, epochs: int | None = None):
    """The job for this entry and task: base snapshot, and epochs from the override, the catalog, or OpenAI's rule."""
    from models.finetune.openai_ft import JobSpec, default_epochs

    tune = entry.finetune
    chosen = epochs or settings.openai.epochs or tune.epochs_by_task.get(task.name) or default_epochs(n_train)
    return JobSpec(base_model=tune.base_snapshot(), epochs=chosen, price_family=tune.price_family,
                   max_tokens_per_example=tune.max_tokens_per_example, suffix=f"ftbench-{task.name}")


def _chat_model(entry: OpenAIEntry, model_id: str, base_url: str, fingerprint: dict[str, Any] | None,
                settings: Settings, http_client_factory, price_family: str | None = None) -> Model:
    from models.openai_api import Endpoint, OpenAIChatModel
    from models.prediction_cache import CachedModel, PredictionCache

    endpoint = Endpoint(model_id, base_url, max_concurrency=settings.openai.max_concurrency,
                        max_retries=settings.openai.max_retries, timeout_s=settings.openai.timeout_s)
    model = OpenAIChatModel(entry.name, endpoint, fingerprint, price_family=price_family or entry.price_family,
                            progress=settings.progress, http_client_factory=http_client_factory)
    return CachedModel(model, PredictionCache.default()) if settings.prediction_cache else model


def _price_family(entry: OpenAIEntry, base_url: str, settings: Settings) -> str | None:
    """For a base entry at api.openai.com: the price family of its model id, in the section of its kind (a base
    id -> [openai.base.*]; an 'ft:' id -> [openai.finetuned.*]); None off OpenAI: free."""
    from models.errors import ConfigError
    from models.openai_api import is_openai_url

    if not is_openai_url(base_url):
        return None
    model_id = entry.resolve_model_id(settings.openai.model)
    kind = "finetuned" if _is_finetuned_id(model_id) else "base"
    family = settings.prices.family_of(model_id, finetuned=kind == "finetuned")
    if family is None:
        raise ConfigError(f"no price for {model_id!r} in {settings.prices.source}; add [openai.{kind}.\"{model_id}\"] "
                          f"with input and output USD per 1M tokens so its cost can be estimated and guarded.")
    return family


def _is_finetuned_id(model_id: str) -> bool:
    """OpenAI names every fine-tuned model 'ft:<base>:<org>:<suffix>:<id>'; it is billed at fine-tuned rates."""
    return model_id.startswith("ft:")


def _is_finetuned(model: Model | None, entry: CatalogEntry | OpenAIEntry | None = None) -> bool:
    """A fine-tuned entry, or a base entry serving a fine-tuned model id: the price table's finetuned section."""
    endpoint = getattr(model, "endpoint", None)
    return bool(getattr(entry, "finetuned", False)) or (endpoint is not None and _is_finetuned_id(endpoint.model))


def _eval_spend(model: Model | None, prompts, config: GenerationConfig, settings: Settings, *,
                encoding: str | None = None, family: str | None = None, finetuned: bool | None = None) -> float:
    """Upper bound of what generating `prompts` costs now: the prompts the cache cannot answer, each at its exact
    input tokens plus max_new_tokens of output, at the prices of the model's kind (base or fine-tuned)."""
    from models.openai_api import estimate_requests
    from models.tokens import encoding_for

    family = family or getattr(model, "price_family", None)
    if family is None:
        return 0.0
    finetuned = _is_finetuned(model) if finetuned is None else finetuned
    pending = [prompts[i] for i in model.misses(prompts, config)] if hasattr(model, "misses") else list(prompts)
    encoding = encoding or encoding_for(model.endpoint.model)
    messages = [p.chat() or [{"role": "user", "content": p.text}] for p in pending]
    return estimate_requests(messages, [config.max_new_tokens] * len(pending), encoding,
                             settings.prices.token_prices(family, finetuned=finetuned)).usd


def eval_examples(task: Task, settings: Settings) -> list[Example]:
    examples = task.examples(settings.data, task.eval_split)
    return examples[: settings.limit] if settings.limit else examples


def generation_config(task: Task, settings: Settings) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=settings.max_new_tokens, stop=tuple(task.stop), batch_size=settings.batch_size)


def timed_generate(model: Model, examples: Sequence[Example], task: Task, settings: Settings,
                   runner: Callable[..., list[Completion]] | None = None) -> tuple[list[Completion], float]:
    """Generate for every example; `runner` lets pytest-benchmark's pedantic() do the timing call."""
    prompts = [task.prompt(e) for e in examples]
    config = generation_config(task, settings)
    started = time.perf_counter()
    completions = (runner or (lambda f, *a: f(*a)))(model.generate, prompts, config)
    return completions, time.perf_counter() - started


def score_items(task: Task, examples: Sequence[Example], completions: Sequence[Completion],
                data: DataSource) -> list[Score]:
    """Score each answered item under its own guard. An item without an answer is not scored, and a scorer that
    raises gives that item an error, never a wrong verdict or the end of the run."""
    scores = []
    for example, completion in zip(examples, completions, strict=True):
        if completion.error is not None:
            scores.append(Score({m: None for m in task.metrics}))
            continue
        try:
            [score] = task.score([example], [completion.text], data)
        except Exception as err:  # noqa: BLE001 - any scorer failure is this item's error, recorded with its type
            reason = f"scorer error: {type(err).__name__}: {str(err)[:200]}"
            score = Score({m: None for m in task.metrics}, errors={m: reason for m in task.metrics})
        scores.append(score)
    return scores


def item_errors(examples: Sequence[Example], completions: Sequence[Completion],
                scores: Sequence[Score]) -> dict[str, dict[str, str]]:
    """{item id: {stage: reason}} for every item that failed: 'generate', or 'score:<metric>'."""
    found: dict[str, dict[str, str]] = {}
    for example, completion, score in zip(examples, completions, scores, strict=True):
        stages = {"generate": completion.error} if completion.error is not None else {}
        stages |= {f"score:{metric}": reason for metric, reason in score.errors.items()}
        if stages:
            found[example.id] = stages
    return found


class ErrorRateExceeded(AssertionError):
    """Items failed (outage, timeout, malformed answers, scorer errors): the accuracy is not the model's."""


def check_error_rate(record: dict[str, Any], max_error_rate: float) -> None:
    """Raise ErrorRateExceeded, message prefixed 'ERRORS:', when more items failed than --max-error-rate allows."""
    errors = record["errors"]
    if errors["count"] and errors["rate"] > max_error_rate:
        where = (record.get("requests") or {}).get("endpoint") or record["model"]
        raise ErrorRateExceeded(
            f"ERRORS: {errors['count']} of {record['data']['n']} items of {record['task']} x {record['model']} failed "
            f"({errors['rate']:.1%} > --max-error-rate {max_error_rate:g}) at {where}; by reason: "
            f"{errors['by_reason']}; first: {rec.first_errors(errors)}. The accuracy covers only the answered items; fix the cause "
            f"and rerun (answers already received are cached and not asked again).")


def build_record(task: Task, entry: CatalogEntry, prepared: PreparedModel, examples: Sequence[Example],
                 completions: Sequence[Completion], scores: Sequence[Score], wall_s: float,
                 settings: Settings) -> dict[str, Any]:
    """The result record (benchmarks.record) for one task x model run."""
    metrics = {m: rec.summarize_metric([s.outcomes.get(m) for s in scores]) for m in task.metrics}
    failed = item_errors(examples, completions, scores)
    for m in task.metrics:
        metrics[m]["errors"] = sum(1 for stages in failed.values() if "generate" in stages or f"score:{m}" in stages)
    headline = next((m for m in (task.headline, *task.metrics) if metrics[m]["n"]), task.headline)
    hardware = detect_hardware()
    prompt_tokens = sum(c.usage.prompt_tokens for c in completions)
    completion_tokens = sum(c.usage.completion_tokens for c in completions)
    at_once = _items_at_once(prepared.model, entry, settings.batch_size, len(completions))
    eval_cost, eval_basis = _eval_cost(prepared.model, completions, hardware, settings.prices,
                                       finetuned=_is_finetuned(prepared.model, entry), items_at_once=at_once)
    train_cost, train_basis = _training_cost(prepared.training, settings.prices)
    n = len(examples)
    record, nonfinite = rec.nonfinite_to_null({
        "schema": rec.SCHEMA,
        "task": task.name,
        "model": entry.name,
        "data": settings.data.to_json() | {"split": task.eval_split, "n": n,
                                           "fingerprint": fingerprint_rows([e.fields | {"target": e.target} for e in examples])},
        "model_fingerprint": prepared.model.fingerprint(),
        "metric": headline,
        "accuracy": metrics[headline]["value"],
        "accuracy_basis": f"{metrics[headline]['n']} of {n} items: those with an answer and a verdict on {headline} "
                          f"({len(failed)} errors, never counted wrong; see errors)",
        "ci95": metrics[headline]["ci95"],
        "metrics": metrics,
        "items": {e.id: dict(s.outcomes) for e, s in zip(examples, scores)},
        "predictions": {e.id: c.text if c.error is None else None for e, c in zip(examples, completions)},
        "reasons": {e.id: s.reasons for e, s in zip(examples, scores) if s.reasons},
        "errors": rec.error_summary(failed, n),
        "requests": endpoint.to_json() if (endpoint := getattr(prepared.model, "endpoint", None)) else None,
        "latency_s": rec.latency_summary(completions, wall_s),
        "throughput": {"examples_per_s": n / wall_s if wall_s else None,
                       "completion_tokens_per_s": completion_tokens / wall_s if wall_s else None},
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
        "cost_usd": {"train": train_cost, "eval": eval_cost,
                     "per_1k_requests": eval_cost / n * 1000 if n and eval_cost is not None else None,
                     "prices_date": settings.prices.date,
                     "pricing": {"eval": eval_basis, "train": train_basis, "price_file": settings.prices.source,
                                 "cached_items": sum(c.cached for c in completions)}},
        "training": prepared.training,
        "machine": rec.machine_info(hardware.description, hardware.key),
    })
    if nonfinite:  # a bug upstream, not a measurement: the record stays strict JSON and says what it dropped
        record["nonfinite_fields"] = nonfinite
    return record


def _eval_cost(model: Model, completions: Sequence[Completion], hardware: Hardware, prices: PriceTable, *,
               finetuned: bool, items_at_once: int) -> tuple[float | None, str]:
    """(USD, how) of producing these predictions. One rule for every model, cached or not: what producing the
    predictions costs at the current price table, from what was measured when each was produced (a cached
    completion keeps its original usage and latency_s). So a rerun answered from the prediction cache records the
    first run's cost, never ~$0, and `ftbench diff` sees no saving that is only a cache hit.

    - A token-priced API model (it names its `price_family`): prompt and completion tokens x the per-token prices of
      its kind (base or fine-tuned).
    - Anything else (local weights, a free server): machine time x the hourly rate x the devices used. Machine time
      is the sum of each item's `machine_s` (its share of its batch's wall time, stored with cached answers), so it
      equals the generation wall time on the first run and stays the same on every rerun. Items without one (an
      HTTP server; answers cached before machine_s existed) count latency_s / the items generated at once. None
      (unknown) when the table has no rate for the hardware.
    """
    family = getattr(model, "price_family", None)
    if family:
        price = prices.token_prices(family, finetuned=finetuned)
        prompt_tokens = sum(c.usage.prompt_tokens for c in completions)
        completion_tokens = sum(c.usage.completion_tokens for c in completions)
        cost = token_cost(prompt_tokens, price["input"]) + token_cost(completion_tokens, price["output"])
        kind = "fine-tuned" if finetuned else "base"
        return cost, (f"tokens: {prompt_tokens} in x ${price['input']}/1M + {completion_tokens} out x "
                      f"${price['output']}/1M ({family}, {kind} model prices)")
    seconds = sum(c.machine_s if c.machine_s is not None else c.latency_s / max(1, items_at_once)
                  for c in completions)
    cached = sum(c.cached for c in completions)
    return _machine_cost(seconds, hardware.to_json(), 1, prices,
                         f"machine time of generation: {seconds:.3f} s, the items' shares of their batches' wall time "
                         f"({cached} stored with cached answers; without a share, latency / {items_at_once} at once)")


def _items_at_once(model: Model, entry: CatalogEntry | OpenAIEntry, batch_size: int, n: int) -> int:
    """How many items a backend generates together, i.e. by how much their latency_s overlap."""
    endpoint = getattr(model, "endpoint", None)
    if endpoint is not None:  # an HTTP server: up to max_concurrency requests in flight
        return endpoint.max_concurrency
    if getattr(entry, "runtime", "hf") == "hf":  # transformers decodes a batch; each latency runs from its start
        return max(1, min(batch_size, n))
    return 1  # vLLM records each item's share of the call


def _machine_cost(seconds: float, hardware: dict[str, Any], processes: int, prices: PriceTable,
                  what: str) -> tuple[float | None, str]:
    """(USD or None, how): seconds x the hourly rate of one device x the devices billed (see devices_billed)."""
    rate = prices.hourly_rate(hardware["key"])
    if rate is None:
        return None, (f"unknown: no hourly price for hardware {hardware['key']!r} ({hardware.get('description')}) "
                      f"in {prices.source}")
    devices = devices_billed(hardware, processes)
    return hardware_cost(seconds, rate) * devices, f"{what} x ${rate}/h x {devices} ({hardware['key']})"


def _training_cost(training: dict[str, Any] | None, prices: PriceTable) -> tuple[float | None, str | None]:
    """(USD, how): an OpenAI job's trained tokens x the fine-tuned training price; a LoRA run's wall time x the
    hourly rate x the devices it ran on (GPUs: processes x GPUs each; CPU: one machine); 0 for base models."""
    if not training:
        return 0.0, None
    if training.get("provider") == "openai":
        price = prices.token_prices(training["price_family"], finetuned=True)["training"]
        return (token_cost(training["trained_tokens"], price),
                f"trained tokens {training['trained_tokens']} x ${price}/1M ({training['price_family']})")
    processes = training.get("processes", 1)
    return _machine_cost(training["wall_s"], training["hardware"], processes, prices,
                         f"wall time {training['wall_s']:.1f} s, {processes} process(es)")
