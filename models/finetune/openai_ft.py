"""OpenAI fine-tuning jobs, top to bottom: plan (offline) -> guard -> upload -> create (persisted) -> poll -> result.

`plan_finetune` needs no network and no key: it builds the JSONL files, validates them, counts their tokens with
OpenAI's own encoding, prices the job and looks for a job this exact configuration already started. `run_finetune`
then refuses (BudgetError) before any call unless paid work is allowed and the estimate fits the budget, uploads,
creates the job and writes its id to a state file at once, and polls it while showing its events.

No double spend: the state file is keyed by the content hash of base model + hyperparameters + training and
validation files. A rerun after a crash or Ctrl-C reattaches to the persisted job; a succeeded job's model is reused
without any call; before uploading, a succeeded or live job whose id never got saved (crash, lost state file) is
found again by the `ftbench_key` metadata it was created with. Failed and cancelled jobs are never picked up again,
so deleting the state file of a failed job retries it.

No twin jobs: OpenAI has no idempotency key for job creation, and a create answered 5xx, timed out or cut off may
still have made the job. So the client never retries a create by itself: after any failed create, ftbench first looks
for a job carrying our key and uses it, and only when there is none creates again (bounded, with the client's
backoff). When several jobs carry the key anyway (older versions, two runs at once), one is used deterministically
and a warning names every other one with the command that cancels it; their ids go to the result's `twin_jobs`.

The caller passes the rows in (models/ never imports benchmarks/): `{"messages": [..., assistant answer]}` each.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from models.errors import BackendError
from models.files import write_atomic
from models.finetune.openai_plan import Budget, JobSpec, TrainingEstimate, estimate_training, jsonl_bytes
from models.pricing import PriceTable, token_cost

STATE_VERSION = 1  # bump when the state file or the job key changes meaning
TERMINAL = {"succeeded", "failed", "cancelled"}
METADATA_KEY = "ftbench_key"
RETRY_AFTER_MAX_S = 60.0  # a server-given Retry-After up to this is honoured; beyond it, the client's own backoff


# --- state: one JSON file per job key, written atomically ----------------------------------------------------------


def jobs_dir() -> Path:
    """Where job states live: $FTBENCH_OPENAI_JOBS, else <ftbench cache>/openai_jobs."""
    from models.weights import cache_root

    return Path(os.environ.get("FTBENCH_OPENAI_JOBS") or cache_root() / "openai_jobs")


def job_key(spec: JobSpec, train_file: bytes, validation_file: bytes) -> str:
    """sha256 over base model + hyperparameters + both files' contents."""
    parts = {"version": STATE_VERSION, "spec": spec.to_json(), "train": hashlib.sha256(train_file).hexdigest(),
             "validation": hashlib.sha256(validation_file).hexdigest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def read_state(path: Path) -> dict[str, Any]:
    """The persisted state, or {} when there is none. A corrupt file is an error: it may hold a paid job's id."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise BackendError(f"cannot read the fine-tuning state {path}: {err}. It may name a running job: fix the "
                           f"file, or delete it if you are sure no job is running for it.") from err


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(state, indent=2))


# --- plan (offline) and run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTunePlan:
    """A validated, priced job and what an earlier run left of it; building it sends nothing."""

    spec: JobSpec
    train_file: bytes = field(repr=False)
    validation_file: bytes = field(repr=False)
    estimate: TrainingEstimate
    key: str
    state_path: Path
    state: dict[str, Any]
    """The persisted state ({} for a new job)."""

    @property
    def finished_model(self) -> str | None:
        """The fine-tuned model of a persisted, succeeded job: reusable with no call at all."""
        return self.state.get("fine_tuned_model") if self.state.get("status") == "succeeded" else None

    @property
    def new_spend_usd(self) -> float:
        """What running this plan may still spend: nothing once a job exists (it is paid or being paid)."""
        return 0.0 if self.state.get("job_id") else self.estimate.usd


def plan_finetune(train_rows: Sequence[dict[str, Any]], validation_rows: Sequence[dict[str, Any]], spec: JobSpec,
                  prices: PriceTable, *, state_dir: Path | None = None) -> FineTunePlan:
    estimate = estimate_training(train_rows, validation_rows, spec, prices)
    train_file, validation_file = jsonl_bytes(train_rows), jsonl_bytes(validation_rows)
    key = job_key(spec, train_file, validation_file)
    state_path = (state_dir or jobs_dir()) / f"{key[:24]}.json"
    return FineTunePlan(spec, train_file, validation_file, estimate, key, state_path, read_state(state_path))


@dataclass(frozen=True)
class FineTuneResult:
    """A finished job: the model to evaluate, and what training measured (the record's `training`)."""

    model_id: str
    """The fine-tuned model's id, 'ft:<base>:<org>:<suffix>:<id>'."""
    job_id: str
    trained_tokens: int
    """Billed tokens as OpenAI reports them."""
    cost_usd: float
    """trained_tokens x the training price."""
    reused: bool
    """True when an earlier run's job was reused or reattached to."""
    info: dict[str, Any]


def run_finetune(plan: FineTunePlan, make_client: Callable[[], Any], budget: Budget, *, poll_interval_s: float = 20.0,
                 progress: bool = True, log: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> FineTuneResult:
    """The fine-tuned model for `plan`: reused, reattached to, or trained now. Guarded before any paid call."""
    from models.openai_api import describe_error, redact, require_openai

    say, warn = _reporters(log)
    if plan.finished_model:
        return _result_from_state(plan)
    say(plan.estimate.describe())
    if not plan.state.get("job_id"):
        budget.check(plan.estimate.usd, f"fine-tuning {plan.spec.base_model} for {plan.spec.epochs} epochs")
    openai = require_openai()
    client = make_client()
    failure = None
    try:
        job, reattached = _attach_or_create(client, plan, say, warn, sleep)
        job, last_event = _poll(client, job, plan, say, poll_interval_s=poll_interval_s, progress=progress,
                                sleep=sleep)
    except openai.APIError as err:  # after the client's own retries
        failure = redact(f"OpenAI fine-tuning call failed: {describe_error(err)}. State so far: {plan.state_path}; "
                         f"rerun to resume without starting a second job.")
    if failure:  # raised outside the except block: the error carries no link to the unredacted original
        raise BackendError(failure)
    return _finish(job, plan, reattached, last_event)


def _attach_or_create(client, plan: FineTunePlan, say: Callable[[str], None], warn: Callable[[str], None],
                      sleep: Callable[[float], None]) -> tuple[Any, bool]:
    state = dict(plan.state) or {"version": STATE_VERSION, "key": plan.key, "spec": plan.spec.to_json(),
                                 "estimate": plan.estimate.to_json()}
    if state.get("job_id"):
        say(f"reattaching to fine-tuning job {state['job_id']} (state {plan.state_path})")
        job = client.fine_tuning.jobs.retrieve(state["job_id"])
        # the persisted job stays the one followed; twins an older version left are only reported
        twins = [other for other in _jobs_with_key(client, plan.key) if other.id != job.id]
        _note_twins(client, plan, state, job, twins, warn)
        return job, True
    # an earlier create may have reached OpenAI without its id being saved (a crash, a lost or deleted state file)
    orphan = _adopt_job_by_key(client, plan, state, warn)
    if orphan is not None:
        say(f"found fine-tuning job {orphan.id} ({orphan.status}) for this configuration, created by an earlier run "
            f"that did not save it; using it instead of starting another (state {plan.state_path})")
        return orphan, True
    for name, content in (("training_file", plan.train_file), ("validation_file", plan.validation_file)):
        if not state.get(name) and content:
            state[name] = client.files.create(file=(f"ftbench-{plan.key[:12]}-{name}.jsonl", content),
                                              purpose="fine-tune").id
            _save(plan, state | {"status": "uploaded"})
    return _create_job(client, plan, state, say, warn, sleep), False


def _create_job(client, plan: FineTunePlan, state: dict[str, Any], say: Callable[[str], None],
                warn: Callable[[str], None], sleep: Callable[[float], None]):
    """Create the job at most once per attempt, never blindly twice: a failed create may still have made the job
    (5xx after the fact, timeout, dropped connection, garbled answer), so each failure is followed by a look-up by
    key, and a retry only when no job carries it. As many attempts as the client would make (1 + max_retries)."""
    from models.openai_api import describe_error, redact, require_openai

    attempts = 1 + client.max_retries
    attempt = 0
    while True:
        attempt += 1
        try:
            job = _send_create(client, plan, state)
        except require_openai().APIError as err:
            failure = err
        else:
            _save(plan, state | {"job_id": job.id, "status": job.status})  # at once: a crash from here on reattaches
            say(f"created fine-tuning job {job.id} (state {plan.state_path})")
            return job
        retry = _retryable(failure)
        say(f"creating the fine-tuning job failed (attempt {attempt} of {attempts}): "
            f"{redact(describe_error(failure))}; looking for a job with key {plan.key[:12]} before "
            + ("retrying" if retry else "giving up"))
        if retry:
            sleep(_backoff_s(failure, attempt))  # also gives OpenAI time to list a job the failed request made
        found = _adopt_job_by_key(client, plan, state, warn)
        if found is not None:
            say(f"the failed create did make fine-tuning job {found.id}; using it (state {plan.state_path})")
            return found
        if not retry or attempt == attempts:
            raise failure


def _send_create(client, plan: FineTunePlan, state: dict[str, Any]):
    """One create request, with the client's retries off (they would start a second paid job)."""
    from models.openai_api import require_openai

    openai = require_openai()
    optional = {"validation_file": state.get("validation_file"), "suffix": plan.spec.suffix}
    raw = client.with_options(max_retries=0).fine_tuning.jobs.with_raw_response.create(
        model=plan.spec.base_model, training_file=state["training_file"], seed=plan.spec.seed,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": plan.spec.epochs}}},
        metadata={METADATA_KEY: plan.key[:64]}, **{k: v for k, v in optional.items() if v},
    )
    job = raw.parse()
    if not (isinstance(getattr(job, "id", None), str) and job.id and isinstance(getattr(job, "status", None), str)):
        # the client does not check the shape of a 200 answer; a garbled one must not pass for a job
        raise openai.APIResponseValidationError(raw.http_response, raw.text[:200],
                                                message=f"the create answer is not a job: {raw.text[:200]!r}")
    return job


def _retryable(err: Exception) -> bool:
    """The client's own rule (connection errors, x-should-retry, then 408/409/429/5xx), plus garbled answers."""
    from models.openai_api import require_openai

    openai = require_openai()
    if isinstance(err, (openai.APIConnectionError, openai.APIResponseValidationError)):
        return True  # no answer or a garbled one: the look-up before the retry tells whether the job was made
    response = getattr(err, "response", None)
    if response is None:
        return False
    should = response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    return response.status_code in (408, 409, 429) or response.status_code >= 500


def _backoff_s(err: Exception, attempt: int) -> float:
    """Seconds before retry `attempt` + 1, as the client waits: Retry-After(-ms) when the server gives a sensible one,
    else 0.5 s doubling up to 8 s."""
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            delay = float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
        if 0 < delay <= RETRY_AFTER_MAX_S:
            return delay
    return min(0.5 * 2 ** (attempt - 1), 8.0)


def _jobs_with_key(client, key: str) -> list:
    """Every succeeded or live job created with our `ftbench_key` metadata, over all pages of the list.

    Failed and cancelled ones are left out: they are what a deliberate retry (state file deleted) leaves behind, and
    reusing one would only fail again."""
    pages = client.fine_tuning.jobs.list(metadata={METADATA_KEY: key[:64]}, limit=50)  # iterating follows `after`
    return [job for job in pages
            if (job.metadata or {}).get(METADATA_KEY) == key[:64] and job.status not in ("failed", "cancelled")]


def _pick_job(jobs: Sequence[Any]) -> tuple[Any, list]:
    """(the job to use, the others): a succeeded one first, then live ones; the newest within each, then by id, so
    that every run picks the same one."""
    def rank(job) -> tuple:
        return job.status != "succeeded", -(job.created_at or 0), job.id

    ordered = sorted(jobs, key=rank)
    return ordered[0], ordered[1:]


def _adopt_job_by_key(client, plan: FineTunePlan, state: dict[str, Any], warn: Callable[[str], None]):
    """The job carrying our key (persisted at once), or None; twins are reported."""
    jobs = _jobs_with_key(client, plan.key)
    if not jobs:
        return None
    job, twins = _pick_job(jobs)
    state = state | {"job_id": job.id, "status": job.status}
    _save(plan, state)
    _note_twins(client, plan, state, job, twins, warn)
    return job


def _note_twins(client, plan: FineTunePlan, state: dict[str, Any], job, twins: Sequence[Any],
                warn: Callable[[str], None]) -> None:
    """Warn about each other job with our key, with the command that cancels it, and keep their ids in the state."""
    from models.openai_api import public_url

    if not twins:
        return
    base = public_url(str(client.base_url))
    for twin in twins:
        if twin.status in TERMINAL:
            what = f"it already {twin.status} (and was billed), nothing to cancel"
        else:  # the installed openai package has no CLI: the REST call works everywhere
            what = (f"it is {twin.status} and may be billed: cancel it with curl -X POST {base}/fine_tuning/jobs/"
                    f"{twin.id}/cancel -H \"Authorization: Bearer $OPENAI_API_KEY\"")
        warn(f"fine-tuning job {twin.id} is a twin of {job.id} (same configuration, key {plan.key[:12]}); ftbench "
             f"uses {job.id}; {what}")
    _save(plan, state | {"twin_jobs": [twin.id for twin in twins]})


def _poll(client, job, plan: FineTunePlan, say: Callable[[str], None], *, poll_interval_s: float, progress: bool,
          sleep: Callable[[float], None]):
    from tqdm.auto import tqdm

    """Follow the job to a terminal status; return it with its latest event message."""
    seen: set[str] = set()
    last_event = None
    saved_status = read_state(plan.state_path).get("status")
    bar = tqdm(desc=f"{job.id}: {job.status}", unit="step", disable=not progress)
    try:
        while True:
            last_event = _show_new_events(client, job.id, seen, bar, say) or last_event
            bar.set_description(f"{job.id}: {job.status}")
            if job.status in TERMINAL:
                return job, last_event
            if job.status != saved_status:
                _save(plan, read_state(plan.state_path) | {"status": job.status})
                saved_status = job.status
            sleep(poll_interval_s)
            job = client.fine_tuning.jobs.retrieve(job.id)
    except KeyboardInterrupt:
        say(f"interrupted: job {job.id} keeps running at OpenAI. Rerun to reattach (state {plan.state_path}), or "
            f"cancel it in the dashboard or with client.fine_tuning.jobs.cancel({job.id!r}).")
        raise
    finally:
        bar.close()


def _show_new_events(client, job_id: str, seen: set[str], bar, say: Callable[[str], None]) -> str | None:
    """Print events not shown yet, oldest first (metrics events move the step bar instead); return the newest
    message."""
    page = client.fine_tuning.jobs.list_events(job_id, limit=50)
    newest = next((e.message for e in page.data if e.type != "metrics"), None)
    for event in reversed(page.data):  # the API lists newest first
        if event.id in seen:
            continue
        seen.add(event.id)
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "metrics" and "step" in data:
            bar.total = data.get("total_steps") or bar.total
            bar.n = data["step"]
            bar.set_postfix(loss=data.get("train_loss"))
            bar.refresh()
        else:
            say(f"[{event.level}] {event.message}")
    return newest


def _finish(job, plan: FineTunePlan, reattached: bool, last_event: str | None = None) -> FineTuneResult:
    state = read_state(plan.state_path) | {"job_id": job.id, "status": job.status}
    if job.status != "succeeded":
        _save(plan, state)
        error = getattr(job, "error", None)
        if error and getattr(error, "message", None):
            reason = f"{error.message} (code {error.code}" + (f", param {error.param})" if error.param else ")")
        else:
            reason = f"no error given; last event: {last_event!r}" if last_event else "OpenAI gave no reason"
        raise BackendError(f"fine-tuning job {job.id} {job.status}: {reason}. Its state stays in {plan.state_path} "
                           f"so reruns do not start a new paid job; fix the cause, then delete that file to retry.")
    trained = job.trained_tokens if job.trained_tokens is not None else plan.estimate.trained_tokens
    state |= {"fine_tuned_model": job.fine_tuned_model, "trained_tokens": trained,
              "trained_tokens_source": "job" if job.trained_tokens is not None else "estimate",
              "created_at": job.created_at, "finished_at": job.finished_at}
    _save(plan, state)
    return _result_from_state(replace(plan, state=state), reused=reattached)


def _result_from_state(plan: FineTunePlan, reused: bool = True) -> FineTuneResult:
    state = plan.state
    trained = int(state["trained_tokens"])
    cost = token_cost(trained, plan.estimate.usd_per_million)
    started, finished = state.get("created_at"), state.get("finished_at")
    info = {
        "provider": "openai", "job_id": state["job_id"], "base_model": plan.spec.base_model,
        "fine_tuned_model": state["fine_tuned_model"], "trained_tokens": trained,
        "trained_tokens_source": state.get("trained_tokens_source", "job"), "epochs": plan.spec.epochs,
        "price_family": plan.spec.price_family, "cost_usd": cost, "estimate": plan.estimate.to_json(),
        "spec": plan.spec.to_json(), "key": plan.key, "training_file": state.get("training_file"),
        "validation_file": state.get("validation_file"), "twin_jobs": list(state.get("twin_jobs", [])),
        "wall_s": float(finished - started) if started and finished else None,
        "hardware": {"key": "openai", "description": "OpenAI fine-tuning service"},
    }
    return FineTuneResult(state["fine_tuned_model"], state["job_id"], trained, cost, reused, info)


def _save(plan: FineTunePlan, state: Mapping[str, Any]) -> None:
    write_state(plan.state_path, dict(state) | {"updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})


def _reporters(log: Callable[[str], None] | None) -> tuple[Callable[[str], None], Callable[[str], None]]:
    """(say, warn): the caller's log for both, else tqdm lines and progress warnings (shown even when quiet)."""
    if log is not None:
        return log, lambda text: log(f"warning: {text}")
    from models.progress import warn

    return _tqdm_write, warn


def _tqdm_write(message: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(message)
