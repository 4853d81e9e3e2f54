"""OpenAI fine-tuning jobs against the real openai client over an in-memory transport that plays OpenAI's documented
responses: success, failure, cancellation, 429/500 retries, crash + reattach, lost job id, budget refusal, and no
twin jobs (a create that failed after OpenAI made the job, twins left by earlier runs).

Nothing leaves the process: the client's HTTP layer is an httpx MockTransport (the seam the client offers).
"""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

try:  # the HTTP library under the installed openai client: httpx2 for openai 3.x, httpx before
    import httpx2 as httpx
except ImportError:
    import httpx

from models.errors import BackendError, BudgetError, DataError
from models.finetune import openai_ft
from models.openai_api import sync_client
from models.pricing import load_prices

SECRET = "sk-ftbench-test-0123456789abcdefSECRET"
BASE = "gpt-3.5-turbo-0125"
FT_MODEL = "ft:gpt-3.5-turbo-0125:ftbench:viggo:AbC123xy"
CREATE = ("POST", "/v1/fine_tuning/jobs")
UPLOAD = ("POST", "/v1/files")


def _error(status: int, message: str, code: str, headers: dict | None = None) -> httpx.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return httpx.Response(status, json=body, headers=headers or {})


class FakeOpenAI:
    """OpenAI's files and fine-tuning endpoints in memory, answering with the documented object shapes.

    `statuses` is the life of every job as successive retrieves see it; `faults` queue error responses for a
    (method, path) before it is served; `crash_on` raises KeyboardInterrupt once at a (method, path), as a Ctrl-C or
    a killed process would; for a create, after the job exists (its id is lost on the way back). `after_create`
    queues what replaces a create's answer once the job exists (an error response, or an httpx exception such as a
    timeout); `page_size` caps the list endpoint's `limit`, so that listing goes through `has_more` / `after`.
    """

    def __init__(self, statuses=("validating_files", "queued", "running", "succeeded"), error=None,
                 trained_tokens=26_846, completion="inform(name[Test])"):
        self.statuses, self.error, self.trained_tokens, self.completion = list(statuses), error, trained_tokens, completion
        self.requests: list[tuple[str, str]] = []
        self.headers: list[httpx.Headers] = []
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.polls: Counter = Counter()
        self.faults: dict[tuple[str, str], list[httpx.Response]] = {}
        self.crash_on: set[tuple[str, str]] = set()
        self.on_first_poll = None
        self.after_create: list = []
        self.page_size = 20

    # --- transport seam ---
    def handle(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.requests.append((method, path))
        self.headers.append(request.headers)
        route = (method, re.sub(r"ftjob-\w+", "{job}", path))
        if self.faults.get(route):
            return self.faults[route].pop(0)
        if route in self.crash_on and route != CREATE:
            self.crash_on.discard(route)
            raise KeyboardInterrupt
        handler = {
            UPLOAD: self._upload, CREATE: self._create, ("GET", "/v1/fine_tuning/jobs"): self._list,
            ("GET", "/v1/fine_tuning/jobs/{job}"): self._retrieve,
            ("GET", "/v1/fine_tuning/jobs/{job}/events"): self._events,
            ("POST", "/v1/chat/completions"): self._chat,
        }.get(route)
        return handler(request) if handler else _error(404, f"no route {method} {path}", "not_found")

    def client(self):
        return sync_client(http_client=httpx.Client(transport=httpx.MockTransport(self.handle)), timeout_s=5)

    def async_http_client(self):
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.requests if r == (method, path))

    # --- endpoints ---
    def _upload(self, request):
        body = request.read()
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = body
        return httpx.Response(200, json={"id": file_id, "object": "file", "bytes": len(body), "created_at": 1721764800,
                                         "filename": "train.jsonl", "purpose": "fine-tune", "status": "processed"})

    def _create(self, request):
        job_id = self.add_job(json.loads(request.read()))
        if CREATE in self.crash_on:  # the job exists at OpenAI, but its id never reaches the caller
            self.crash_on.discard(CREATE)
            raise KeyboardInterrupt
        if self.after_create:  # the job exists at OpenAI, but the caller sees an error instead of it
            answer = self.after_create.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(200, json=self._public(job_id))

    def add_job(self, params, status="validating_files", created_at=1721764800):
        """A job as a create with `params` makes it; returns its id."""
        job_id = f"ftjob-{len(self.jobs) + 1:03d}"
        self.jobs[job_id] = {
            "id": job_id, "object": "fine_tuning.job", "model": params["model"], "created_at": created_at,
            "finished_at": None, "fine_tuned_model": None, "organization_id": "org-ftbench", "result_files": [],
            "status": status, "validation_file": params.get("validation_file"),
            "training_file": params["training_file"], "trained_tokens": None, "error": None,
            "hyperparameters": {"n_epochs": params["method"]["supervised"]["hyperparameters"]["n_epochs"],
                                "batch_size": "auto", "learning_rate_multiplier": "auto"},
            "seed": params.get("seed", 0), "metadata": params.get("metadata"), "method": params["method"],
            "estimated_finish": None, "integrations": [], "events": [],
        }
        self._event(job_id, "Created fine-tuning job")
        return job_id

    def _retrieve(self, request):
        job_id = request.url.path.rsplit("/", 1)[1]
        if not self.polls and self.on_first_poll:
            self.on_first_poll()
        self.polls[job_id] += 1
        job = self.jobs[job_id]
        status = self.statuses[min(self.polls[job_id], len(self.statuses) - 1)]
        if status != job["status"]:
            job["status"] = status
            self._event(job_id, f"Job status: {status}")
            if status == "running":
                job["events"].append({"id": f"ftevent-{job_id}-m", "object": "fine_tuning.job.event", "level": "info",
                                      "created_at": 1721764900, "message": "Step 5/10: training loss=0.41",
                                      "type": "metrics", "data": {"step": 5, "total_steps": 10, "train_loss": 0.41}})
        if status == "succeeded":
            job |= {"fine_tuned_model": FT_MODEL, "trained_tokens": self.trained_tokens, "finished_at": 1721768400}
        if status == "failed":
            job["error"] = self.error
        return httpx.Response(200, json=self._public(job_id))

    def _events(self, request):
        job_id = request.url.path.split("/")[-2]
        newest_first = list(reversed(self.jobs[job_id]["events"]))
        return httpx.Response(200, json={"object": "list", "data": newest_first, "has_more": False})

    def _list(self, request):
        wanted = {k[len("metadata["):-1]: v for k, v in request.url.params.items() if k.startswith("metadata[")}
        jobs = [self._public(j) for j, job in reversed(self.jobs.items())  # newest first
                if all((job["metadata"] or {}).get(k) == v for k, v in wanted.items())]
        after = request.url.params.get("after")
        if after:
            jobs = jobs[[job["id"] for job in jobs].index(after) + 1:]
        limit = min(int(request.url.params.get("limit", 20)), self.page_size)
        return httpx.Response(200, json={"object": "list", "data": jobs[:limit], "has_more": len(jobs) > limit})

    def _chat(self, request):
        params = json.loads(request.read())
        prompt_tokens = sum(len(m["content"].split()) for m in params["messages"])
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1721764800, "model": params["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.completion}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 7, "total_tokens": prompt_tokens + 7}})

    def _event(self, job_id, message):
        events = self.jobs[job_id]["events"]
        events.append({"id": f"ftevent-{job_id}-{len(events)}", "object": "fine_tuning.job.event", "level": "info",
                       "created_at": 1721764800 + len(events), "message": message, "type": "message"})

    def _public(self, job_id):
        return {k: v for k, v in self.jobs[job_id].items() if k != "events"}


def _rows(n: int, tag: str = "t") -> list[dict]:
    return [{"messages": [{"role": "system", "content": "Map the sentence to a meaning representation."},
                          {"role": "user", "content": f"{tag} sentence number {i} about a game."},
                          {"role": "assistant", "content": f"inform(name[Game {i}])"}]} for i in range(n)]


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("FTBENCH_OPENAI_JOBS", str(tmp_path / "jobs"))
    monkeypatch.setenv("FTBENCH_PREDICTION_CACHE", str(tmp_path / "predictions"))


@pytest.fixture
def fake():
    return FakeOpenAI()


def _plan(epochs: int = 3):
    spec = openai_ft.JobSpec(BASE, epochs, "gpt-3.5-turbo", max_tokens_per_example=16_385)
    return openai_ft.plan_finetune(_rows(12), _rows(3, "v"), spec, load_prices())


PAID = openai_ft.Budget(allow_paid=True, max_cost_usd=5.0)


def _run(plan, fake, log=None, budget=PAID, sleeps=None):
    return openai_ft.run_finetune(plan, fake.client, budget, poll_interval_s=0, progress=False,
                                  log=(log if log is not None else []).append,
                                  sleep=(sleeps if sleeps is not None else []).append)


def test_success_uploads_creates_persists_at_once_and_records_cost(fake):
    plan, log = _plan(), []
    seen_state = {}
    fake.on_first_poll = lambda: seen_state.update(openai_ft.read_state(plan.state_path))
    result = _run(plan, fake, log)

    assert fake.count(*UPLOAD) == 2 and fake.count(*CREATE) == 1
    assert fake.files["file-1"].count(b"sentence number") == 12 and b"v sentence" in fake.files["file-2"]
    assert seen_state["job_id"] == "ftjob-001"  # written before the first poll
    assert result.model_id == FT_MODEL and result.trained_tokens == 26_846 and not result.reused
    assert result.cost_usd == pytest.approx(26_846 * 8.00 / 1e6)
    assert result.info["fine_tuned_model"] == FT_MODEL and result.info["estimate"]["epochs"] == 3
    assert log[0].startswith("OpenAI fine-tuning estimate for gpt-3.5-turbo-0125")
    assert "[info] Job status: running" in log and "[info] Job status: succeeded" in log
    assert not any("Step 5/10" in line for line in log)  # metrics move the bar, they are not printed
    assert fake.jobs["ftjob-001"]["hyperparameters"]["n_epochs"] == 3
    assert fake.jobs["ftjob-001"]["metadata"] == {"ftbench_key": plan.key}
    assert openai_ft.read_state(plan.state_path)["status"] == "succeeded"


def test_rerun_after_success_reuses_the_model_without_any_call(fake):
    first = _run(_plan(), fake)
    fake.requests.clear()
    again = _run(_plan(), fake)
    assert fake.requests == [] and again.model_id == first.model_id and again.reused


def test_failed_job_raises_its_own_message_and_is_not_restarted():
    fake = FakeOpenAI(statuses=("validating_files", "failed"),
                      error={"code": "invalid_training_file", "param": "training_file",
                             "message": "The job failed due to an invalid training file."})
    with pytest.raises(BackendError, match=r"ftjob-001 failed: The job failed due to an invalid training file\. "
                                           r"\(code invalid_training_file, param training_file\)"):
        _run(_plan(), fake)
    with pytest.raises(BackendError, match="invalid training file"):
        _run(_plan(), fake)  # the rerun reattaches to the failed job: no second paid job
    assert fake.count(*CREATE) == 1 and len(fake.jobs) == 1


def test_cancelled_job_raises_with_its_last_event():
    fake = FakeOpenAI(statuses=("validating_files", "running", "cancelled"))
    with pytest.raises(BackendError, match=r"ftjob-001 cancelled: no error given; last event: 'Job status: cancelled'"):
        _run(_plan(), fake)


def test_rate_limit_honours_retry_after_then_succeeds(fake):
    fake.faults[CREATE] = [_error(429, "Rate limit reached for fine-tuning jobs.", "rate_limit_exceeded",
                                  {"retry-after": "0.01"})]
    sleeps = []
    result = _run(_plan(), fake, sleeps=sleeps)
    creates = [h for r, h in zip(fake.requests, fake.headers) if r == CREATE]
    assert len(creates) == 2 and [h["x-stainless-retry-count"] for h in creates] == ["0", "0"]  # ftbench's retry
    assert sleeps[0] == 0.01 and len(fake.jobs) == 1 and result.model_id == FT_MODEL


def test_server_error_is_retried_then_succeeds(fake):
    fake.faults[("GET", "/v1/fine_tuning/jobs/{job}")] = [_error(500, "The server had an error.", "server_error",
                                                                 {"retry-after-ms": "5"})]
    assert _run(_plan(), fake).model_id == FT_MODEL


def test_persistent_server_error_is_a_clear_error_without_the_key(fake):
    fake.faults[UPLOAD] = [_error(500, f"boom for key {SECRET}", "server_error", {"retry-after-ms": "1"})] * 10
    with pytest.raises(BackendError, match=r"InternalServerError 500.*rerun to resume") as caught:
        _run(_plan(), fake)
    assert SECRET not in str(caught.value) and fake.count(*UPLOAD) == 6  # 1 + the client's 5 retries


def test_crash_between_create_and_poll_then_rerun_reattaches(fake):
    fake.crash_on.add(("GET", "/v1/fine_tuning/jobs/{job}/events"))
    with pytest.raises(KeyboardInterrupt):
        _run(_plan(), fake)
    log = []
    result = _run(_plan(), fake, log)
    assert fake.count(*CREATE) == 1 and fake.count(*UPLOAD) == 2
    assert any("reattaching to fine-tuning job ftjob-001" in line for line in log)
    assert result.model_id == FT_MODEL and result.reused


def test_job_created_but_id_lost_is_found_by_its_metadata(fake):
    fake.crash_on.add(CREATE)
    with pytest.raises(KeyboardInterrupt):
        _run(_plan(), fake)
    assert "job_id" not in openai_ft.read_state(_plan().state_path)
    log = []
    result = _run(_plan(), fake, log)
    assert fake.count(*CREATE) == 1 and fake.count(*UPLOAD) == 2 and len(fake.jobs) == 1
    assert any("created by an earlier run" in line for line in log) and result.model_id == FT_MODEL


# --- no twin jobs: a create is never blindly repeated --------------------------------------------------------------


JOB_LIST = ("GET", "/v1/fine_tuning/jobs")


def _creates_and_lookups(fake):
    return [r for r in fake.requests if r in (CREATE, JOB_LIST)]


def test_create_answered_500_after_the_job_was_made_uses_that_job(fake):
    fake.after_create = [_error(500, "The server had an error.", "server_error", {"retry-after-ms": "5"})]
    log, sleeps = [], []
    result = _run(_plan(), fake, log, sleeps=sleeps)
    assert _creates_and_lookups(fake) == [JOB_LIST, CREATE, JOB_LIST]  # no second create
    assert list(fake.jobs) == ["ftjob-001"] and result.job_id == "ftjob-001" and result.model_id == FT_MODEL
    assert sleeps[0] == 0.005  # the server's retry-after-ms, honoured before looking
    assert any("did make fine-tuning job ftjob-001" in line for line in log)
    assert openai_ft.read_state(_plan().state_path)["job_id"] == "ftjob-001" and result.info["twin_jobs"] == []


@pytest.mark.parametrize("drop", [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("connection closed")])
def test_create_cut_off_after_the_job_was_made_uses_that_job(fake, drop):
    fake.after_create = [drop]
    result = _run(_plan(), fake)
    assert fake.count(*CREATE) == 1 and list(fake.jobs) == ["ftjob-001"] and result.job_id == "ftjob-001"


def test_garbled_create_answer_is_not_taken_for_a_job(fake):
    fake.after_create = [httpx.Response(200, text="<html>502 Bad Gateway</html>")]
    result = _run(_plan(), fake)
    assert fake.count(*CREATE) == 1 and list(fake.jobs) == ["ftjob-001"] and result.model_id == FT_MODEL


def test_create_failing_before_any_job_exists_is_retried_once_per_failure(fake):
    fake.faults[CREATE] = [_error(500, "The server had an error.", "server_error")] * 2
    log, sleeps = [], []
    result = _run(_plan(), fake, log, sleeps=sleeps)
    assert _creates_and_lookups(fake) == [JOB_LIST, CREATE, JOB_LIST, CREATE, JOB_LIST, CREATE]
    assert list(fake.jobs) == ["ftjob-001"] and result.model_id == FT_MODEL and not result.reused
    assert sleeps[:2] == [0.5, 1.0]  # the client's backoff: 0.5 s, doubling
    assert sum("creating the fine-tuning job failed (attempt" in line for line in log) == 2


def test_create_that_keeps_failing_gives_up_after_the_clients_retry_count(fake):
    fake.faults[CREATE] = [_error(500, "The server had an error.", "server_error")] * 10
    with pytest.raises(BackendError, match=r"InternalServerError 500.*rerun to resume"):
        _run(_plan(), fake)
    assert fake.count(*CREATE) == 6 and fake.jobs == {}  # 1 + the client's 5 retries, each after a look-up


def test_create_refused_with_400_is_not_retried(fake):
    fake.faults[CREATE] = [_error(400, "invalid model", "invalid_value")]
    with pytest.raises(BackendError, match=r"BadRequestError 400: .*invalid model"):
        _run(_plan(), fake)
    assert fake.count(*CREATE) == 1 and fake.jobs == {}


def _twin_params(plan):
    return {"model": BASE, "training_file": "file-old", "metadata": {"ftbench_key": plan.key},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}}}


def test_twins_from_earlier_runs_reuse_one_and_name_the_other_with_its_cancel_command(fake):
    plan = _plan()
    fake.page_size = 1  # the jobs come one page at a time
    fake.add_job(_twin_params(plan), status="failed", created_at=1721760000)  # left behind: never picked up
    fake.add_job(_twin_params(plan), status="running", created_at=1721761000)
    fake.add_job(_twin_params(plan), status="queued", created_at=1721762000)  # newest live job: used
    fake.statuses = ["queued", "succeeded"]
    log = []
    result = _run(plan, fake, log)
    assert fake.count(*CREATE) == 0 and fake.count(*UPLOAD) == 0 and fake.count(*JOB_LIST) == 3
    assert result.job_id == "ftjob-003" and result.model_id == FT_MODEL and result.info["twin_jobs"] == ["ftjob-002"]
    warnings = [line for line in log if line.startswith("warning:")]
    assert warnings == [
        f"warning: fine-tuning job ftjob-002 is a twin of ftjob-003 (same configuration, key {plan.key[:12]}); "
        f"ftbench uses ftjob-003; it is running and may be billed: cancel it with curl -X POST "
        f"https://api.openai.com/v1/fine_tuning/jobs/ftjob-002/cancel -H \"Authorization: Bearer $OPENAI_API_KEY\""]
    again = _run(_plan(), fake)  # finished: no call, the twins still recorded
    assert again.info["twin_jobs"] == ["ftjob-002"]


def test_a_succeeded_twin_is_preferred(fake):
    plan = _plan()
    fake.add_job(_twin_params(plan), status="succeeded", created_at=1721760000)
    fake.add_job(_twin_params(plan), status="running", created_at=1721762000)
    fake.jobs["ftjob-001"] |= {"fine_tuned_model": FT_MODEL, "trained_tokens": 26_846}
    fake.statuses = ["succeeded"]
    log = []
    result = _run(plan, fake, log)
    assert result.job_id == "ftjob-001" and result.info["twin_jobs"] == ["ftjob-002"] and fake.count(*CREATE) == 0
    assert any("ftjob-002 is a twin of ftjob-001" in line and "/ftjob-002/cancel" in line for line in log)


def test_reattach_reports_twins_but_keeps_the_persisted_job(fake):
    fake.crash_on.add(("GET", "/v1/fine_tuning/jobs/{job}/events"))
    with pytest.raises(KeyboardInterrupt):
        _run(_plan(), fake)
    fake.add_job(_twin_params(_plan()), status="running", created_at=1721769999)  # e.g. an older version's retry
    log = []
    result = _run(_plan(), fake, log)
    assert result.job_id == "ftjob-001" and result.info["twin_jobs"] == ["ftjob-002"] and fake.count(*CREATE) == 1
    assert any(line.startswith("warning: fine-tuning job ftjob-002 is a twin of ftjob-001") for line in log)


def test_twin_warning_without_a_log_goes_to_the_progress_display(fake, capsys):
    plan = _plan()
    fake.add_job(_twin_params(plan), status="running")
    fake.add_job(_twin_params(plan), status="queued")
    openai_ft.run_finetune(plan, fake.client, PAID, poll_interval_s=0, progress=False, sleep=lambda s: None)
    assert "ftbench: warning: fine-tuning job ftjob-002 is a twin of ftjob-001" in capsys.readouterr().err


@pytest.mark.parametrize("budget, reason", [
    (openai_ft.Budget(allow_paid=False), r"without an explicit opt-in.*\(estimate \$0\.\d\d+\).*--run-paid"),
    (openai_ft.Budget(allow_paid=True, max_cost_usd=0.001), r"estimated at \$0\.\d{4}, over --max-cost \$0\.0010"),
])
def test_budget_refusal_comes_before_any_call(fake, budget, reason):
    clients = []
    with pytest.raises(BudgetError, match=reason):
        openai_ft.run_finetune(_plan(), lambda: clients.append(1) or fake.client(), budget, progress=False,
                               log=[].append)
    assert fake.requests == [] and clients == []
    assert not _plan().state_path.exists()


@pytest.mark.parametrize("rows, problem", [
    (_rows(5), r"5 examples; OpenAI needs at least 10"),
    (_rows(11)[:-1] + [{"messages": _rows(1)[0]["messages"][:2]}], r"row 10: the last message must be the assistant"),
    (_rows(10) + [{"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "x"}]}],
     r"row 10: message 0: empty content"),
])
def test_invalid_training_file_is_refused_before_upload(rows, problem):
    spec = openai_ft.JobSpec(BASE, 3, "gpt-3.5-turbo")
    with pytest.raises(DataError, match=problem):
        openai_ft.plan_finetune(rows, [], spec, load_prices())


def test_example_over_the_model_limit_is_refused():
    spec = openai_ft.JobSpec(BASE, 3, "gpt-3.5-turbo", max_tokens_per_example=20)
    with pytest.raises(DataError, match=r"row 0: \d+ tokens, over the model's 20 per example"):
        openai_ft.plan_finetune(_rows(10), [], spec, load_prices())


def test_job_key_changes_with_base_hyperparameters_and_data():
    plan = _plan()
    assert _plan().key == plan.key
    assert _plan(epochs=2).key != plan.key
    other = openai_ft.JobSpec("gpt-3.5-turbo-1106", 3, "gpt-3.5-turbo", max_tokens_per_example=16_385)
    assert openai_ft.plan_finetune(_rows(12), _rows(3, "v"), other, load_prices()).key != plan.key
    spec = plan.spec
    assert openai_ft.plan_finetune(_rows(13), _rows(3, "v"), spec, load_prices()).key != plan.key


# --- through the runner: guard, job, chat model, record, cache ------------------------------------------------------


def _settings(**overrides):
    from benchmarks.data import resolve_data
    from benchmarks.runner import OpenAISettings, Settings

    values = dict(data=resolve_data("fixtures"), limit=4, prices=load_prices(), progress=False, allow_paid=True,
                  max_cost_usd=5.0, openai=OpenAISettings(poll_interval_s=0))
    return Settings(**(values | overrides))


def _benchmark(fake, settings):
    from benchmarks.runner import build_record, eval_examples, prepare_model, timed_generate
    from models.backends.openai import OpenAIBackend
    from benchmarks.tasks import get_task
    from models import catalog

    task, entry = get_task("viggo"), catalog.get("gpt-3.5-turbo-ft")
    backend = OpenAIBackend(make_client=fake.client, http_client_factory=fake.async_http_client)
    prepared = prepare_model(entry, task, settings, backend=backend)
    examples = eval_examples(task, settings)
    completions, wall_s = timed_generate(prepared.model, examples, task, settings)
    scores = task.score(examples, [c.text for c in completions], settings.data)
    return build_record(task, entry, prepared, examples, completions, scores, wall_s, settings).to_json()


def test_runner_records_the_job_and_token_costs_and_a_rerun_calls_nothing(fake, tmp_path):
    record = _benchmark(fake, _settings())
    training, cost = record["training"], record["cost_usd"]
    assert training["fine_tuned_model"] == FT_MODEL and training["trained_tokens"] == 26_846
    assert training["validation"] == "the valid split" and training["train_examples"] == 64
    assert cost["train"] == pytest.approx(26_846 * 8.00 / 1e6)
    usage = record["tokens"]
    # fine-tuned gpt-3.5-turbo: $3.00 in / $6.00 out per 1M (prices.toml [openai.finetuned."gpt-3.5-turbo"])
    assert cost["eval"] == pytest.approx(usage["prompt"] * 3.00 / 1e6 + usage["completion"] * 6.00 / 1e6)
    assert cost["pricing"]["eval"].startswith("tokens:") and cost["pricing"]["cached_items"] == 0
    assert record["model_fingerprint"]["adapter"] == f"openai:{FT_MODEL}"
    assert record["predictions"]["test/00000"] == "inform(name[Test])"
    assert fake.count("POST", "/v1/chat/completions") == 4

    fake.requests.clear()
    again = _benchmark(fake, _settings(allow_paid=False))  # nothing new to pay for: no opt-in needed
    assert fake.requests == []
    assert again["predictions"] == record["predictions"] and again["cost_usd"]["eval"] == cost["eval"]
    assert again["cost_usd"]["pricing"]["cached_items"] == 4 and again["training"]["cached"] is True

    stored = json.dumps(record) + json.dumps(again) + "".join(
        p.read_text() for p in tmp_path.rglob("*.json"))
    assert SECRET not in stored


def test_runner_refuses_before_any_call_and_names_both_costs(fake):
    with pytest.raises(BudgetError, match=r"fine-tuning \$0\.\d\d+ \(\d[\d,]* trained tokens\) \+ evaluation \$0\.\d\d+"):
        _benchmark(fake, _settings(max_cost_usd=0.0))
    with pytest.raises(BudgetError, match="--run-paid"):
        _benchmark(fake, _settings(allow_paid=False))
    assert fake.requests == []
