"""The chat backend's HTTP behaviour over an in-memory transport: order, concurrency bound, request shape, retries,
per-item errors, fatal errors, and the API key kept out of everything it produces."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

try:  # the HTTP library under the installed openai client: httpx2 for openai 3.x, httpx before
    import httpx2 as httpx
except ImportError:
    import httpx

from models.base import GenerationConfig, Message, Model, Prompt
from models.errors import BackendError
from models.openai_api import Endpoint, OpenAIChatModel, public_url

SECRET = "sk-proj-ftbench0123456789abcdefSECRET"
OPENAI = "https://api.openai.com/v1"
LOCAL = "http://127.0.0.1:9/v1"
PROMPTS = [Prompt(f"q{i}", (Message("system", "Answer."), Message("user", f"q{i}"))) for i in range(9)]
CONFIG = GenerationConfig(max_new_tokens=12, stop=("\n",))


class Server:
    """An OpenAI-style chat endpoint in memory; `plan` maps a user message to responses to give first."""

    def __init__(self, delay_s: float = 0.0):
        self.delay_s, self.plan, self.bodies, self.in_flight, self.max_in_flight = delay_s, {}, [], 0, 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        question = body["messages"][-1]["content"]
        # Later prompts answer sooner, so arrival order differs from prompt order.
        rank = int(question[1:]) if question[1:].isdigit() else 0
        await asyncio.sleep(self.delay_s * (10 - rank) / 10)
        self.in_flight -= 1
        queued = self.plan.get(question)
        if queued:
            return queued.pop(0)
        return httpx.Response(200, json={
            "id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": f"A:{question}\nmore"}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}})

    def model(self, base_url: str = LOCAL, **endpoint) -> OpenAIChatModel:
        return OpenAIChatModel("m", Endpoint("served-model", base_url, **endpoint),
                               http_client_factory=lambda: httpx.AsyncClient(transport=httpx.MockTransport(self.handle)))


def _status(code: int, message: str, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(code, headers=headers or {},
                          json={"error": {"message": message, "type": "invalid_request_error", "code": None}})


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def test_completions_in_prompt_order_with_usage_and_stop_cut():
    server = Server(delay_s=0.02)
    out = server.model().generate(PROMPTS, CONFIG)
    assert isinstance(server.model(), Model)
    assert [c.text for c in out] == [f"A:q{i}" for i in range(9)]  # cut at "\n" even if the server ignored stop
    assert all(c.usage.prompt_tokens == 11 and c.usage.completion_tokens == 3 and c.latency_s > 0 for c in out)
    assert all(c.finish_reason == "stop" and c.error is None for c in out)


def test_concurrency_is_bounded():
    server = Server(delay_s=0.02)
    server.model(max_concurrency=3).generate(PROMPTS, CONFIG)
    assert server.max_in_flight == 3


def test_request_shape_for_openai_and_for_compatible_servers():
    server = Server()
    server.model(OPENAI).generate([PROMPTS[0], Prompt("plain text only")], GenerationConfig(6, stop=tuple("abcde")))
    server.model(LOCAL).generate(PROMPTS[:1], CONFIG)
    paid, text_only, local = server.bodies
    assert paid["temperature"] == 0 and paid["max_completion_tokens"] == 6 and "max_tokens" not in paid
    assert paid["stop"] == ["a", "b", "c", "d"]  # OpenAI takes 4; the 5th is cut locally
    assert paid["messages"] == [{"role": "system", "content": "Answer."}, {"role": "user", "content": "q0"}]
    assert text_only["messages"] == [{"role": "user", "content": "plain text only"}]
    assert local["max_tokens"] == 12 and "max_completion_tokens" not in local


def test_rate_limit_with_retry_after_is_retried_by_the_client():
    server = Server()
    server.plan["q1"] = [_status(429, "Rate limit reached", {"retry-after": "0.01"})]
    out = server.model().generate(PROMPTS[:3], CONFIG)
    assert [c.text for c in out] == ["A:q0", "A:q1", "A:q2"]
    assert sum(b["messages"][-1]["content"] == "q1" for b in server.bodies) == 2


def test_an_item_that_keeps_failing_is_an_error_completion_not_an_exception():
    server = Server()
    server.plan["q1"] = [_status(500, f"server exploded near {SECRET}", {"retry-after-ms": "1"})] * 10
    out = server.model(max_retries=2).generate(PROMPTS[:3], CONFIG)
    assert [c.finish_reason for c in out] == ["stop", "error", "stop"]
    assert out[1].text == "" and "InternalServerError 500" in out[1].error and SECRET not in out[1].error
    assert sum(b["messages"][-1]["content"] == "q1" for b in server.bodies) == 3


@pytest.mark.parametrize("code, meaning", [(401, "the API key was refused"), (403, "this key has no access"),
                                           (404, "the model or endpoint was not found")])
def test_errors_every_item_would_hit_raise_at_once_without_the_key(code, meaning, caplog):
    server = Server()
    server.plan = {p.messages[-1].content: [_status(code, f"Incorrect API key provided: {SECRET}.")] for p in PROMPTS}
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BackendError, match=rf"{meaning} by https://api.openai.com/v1 for model 'served-model' "
                                           rf"\(HTTP {code}") as caught:
        server.model(OPENAI).generate(PROMPTS, CONFIG)
    text = str(caught.value) + repr(caught.value.__cause__) + repr(caught.value.__context__) + caplog.text
    assert SECRET not in text
    assert "Incorrect API key provided: ***." in str(caught.value)


def test_missing_key_for_openai_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    server = Server()
    with pytest.raises(BackendError, match="OPENAI_API_KEY is not set"):
        server.model(OPENAI).generate(PROMPTS[:1], CONFIG)
    assert server.bodies == []
    assert server.model(LOCAL).generate(PROMPTS[:1], CONFIG)[0].text == "A:q0"  # local servers need no key


def test_no_secret_in_identity_and_no_credentials_from_urls():
    model = Server().model("http://user:hunter2@gpu-box:8000/v1?token=abc")
    shown = repr(model) + json.dumps(model.fingerprint())
    assert SECRET not in shown and "hunter2" not in shown and "token" not in shown
    assert model.fingerprint()["endpoint"] == "http://gpu-box:8000/v1" == public_url(model.endpoint.base_url)


def test_generate_works_inside_a_running_event_loop():
    server = Server()

    async def caller():
        return server.model().generate(PROMPTS[:2], CONFIG)

    assert [c.text for c in asyncio.run(caller())] == ["A:q0", "A:q1"]


def _base_model_settings(monkeypatch, tmp_path, model_id, **overrides):
    from benchmarks.data import resolve_data
    from benchmarks.runner import OpenAISettings, Settings
    from models.pricing import load_prices

    monkeypatch.setenv("FTBENCH_PREDICTION_CACHE", str(tmp_path))
    return Settings(**{"data": resolve_data("fixtures"), "limit": 2, "prices": load_prices(), "progress": False,
                       "openai": OpenAISettings(base_url=OPENAI, model=model_id)} | overrides)


@pytest.mark.parametrize("model_id, allow_paid, error", [
    ("gpt-4o-mini", False, r"without an explicit opt-in: openai-compatible on viggo: 2 requests .*--run-paid"),
    ("llama-3-70b", True, r"no price for 'llama-3-70b' in .*prices\.toml; add \[openai\.base\.\"llama-3-70b\"\]"),
])
def test_a_base_model_at_openai_is_priced_and_guarded_before_any_request(monkeypatch, tmp_path, model_id,
                                                                         allow_paid, error):
    from benchmarks.runner import prepare_model
    from models.backends.openai import OpenAIBackend
    from benchmarks.tasks import get_task
    from models import catalog
    from models.errors import FtbenchError

    server = Server()
    settings = _base_model_settings(monkeypatch, tmp_path, model_id, allow_paid=allow_paid, max_cost_usd=0.0)
    factory = lambda: httpx.AsyncClient(transport=httpx.MockTransport(server.handle))  # noqa: E731
    with pytest.raises(FtbenchError, match=error):
        prepare_model(catalog.get("openai-compatible"), get_task("viggo"), settings,
                      backend=OpenAIBackend(http_client_factory=factory))
    assert server.bodies == []


# USD per 1M tokens (input, output): models/prices.toml [openai.base."gpt-4o-mini"] and [openai.finetuned."gpt-4o-mini"]
BASE, TUNED = (0.15, 0.60), (0.30, 1.20)


@pytest.mark.parametrize("model_id, prices", [("gpt-4o-mini", BASE), ("gpt-4o-mini-2024-07-18", BASE),
                                              ("ft:gpt-4o-mini-2024-07-18:acme:viggo:x1", TUNED)])
def test_the_budget_estimate_uses_the_prices_of_the_model_kind(monkeypatch, tmp_path, model_id, prices):
    """A base model must not be guarded (nor billed) at fine-tuned rates: the refused amount is the exact one."""
    from benchmarks.runner import eval_examples, prepare_model
    from models.backends.openai import OpenAIBackend
    from benchmarks.tasks import get_task
    from models import catalog
    from models.errors import BudgetError
    from models.money import usd
    from models.tokens import chat_tokens

    task, server = get_task("viggo"), Server()
    settings = _base_model_settings(monkeypatch, tmp_path, model_id, allow_paid=True, max_cost_usd=0.0)
    chats = [task.prompt(e).chat() for e in eval_examples(task, settings)]
    tokens_in = sum(chat_tokens(chat, "o200k_base") for chat in chats)
    expected = (tokens_in * prices[0] + len(chats) * settings.max_new_tokens * prices[1]) / 1e6
    factory = lambda: httpx.AsyncClient(transport=httpx.MockTransport(server.handle))  # noqa: E731
    with pytest.raises(BudgetError, match=rf"estimated at \{usd(expected, 0.0)[0]}, over") as refused:
        prepare_model(catalog.get("openai-compatible"), task, settings,
                      backend=OpenAIBackend(http_client_factory=factory))
    other = TUNED if prices == BASE else BASE
    wrong = (tokens_in * other[0] + len(chats) * settings.max_new_tokens * other[1]) / 1e6
    assert usd(wrong, 0.0)[0] not in str(refused.value) and server.bodies == []


@pytest.mark.parametrize("model_id, prices", [("gpt-4o-mini", BASE), ("ft:gpt-4o-mini-2024-07-18:acme:viggo:x1", TUNED)])
def test_a_record_bills_base_and_finetuned_models_at_their_own_prices(monkeypatch, tmp_path, model_id, prices):
    from benchmarks.runner import build_record, eval_examples, prepare_model, timed_generate
    from models.backends.openai import OpenAIBackend
    from benchmarks.tasks import get_task
    from models import catalog

    task, entry, server = get_task("viggo"), catalog.get("openai-compatible"), Server()
    settings = _base_model_settings(monkeypatch, tmp_path, model_id, allow_paid=True)
    factory = lambda: httpx.AsyncClient(transport=httpx.MockTransport(server.handle))  # noqa: E731
    prepared = prepare_model(entry, task, settings, backend=OpenAIBackend(http_client_factory=factory))
    examples = eval_examples(task, settings)
    completions, wall_s = timed_generate(prepared.model, examples, task, settings)
    scores = task.score(examples, [c.text for c in completions], settings.data)
    record = build_record(task, entry, prepared, examples, completions, scores, wall_s, settings).to_json()
    # The server bills 11 prompt + 3 completion tokens per request; 2 requests.
    assert record["cost_usd"]["eval"] == pytest.approx((22 * prices[0] + 6 * prices[1]) / 1e6)
    kind = "base" if prices == BASE else "fine-tuned"
    assert f"${prices[0]}/1M" in record["cost_usd"]["pricing"]["eval"] and f"{kind} model prices" in \
        record["cost_usd"]["pricing"]["eval"]
