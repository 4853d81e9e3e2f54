"""OpenAI chat completions as a Model: OpenAI itself, or any OpenAI-compatible server (vLLM, `transformers serve`).

Requests run concurrently on `AsyncOpenAI` behind a semaphore; `generate()` stays synchronous for its callers. Retries
(429, 408, 409, 5xx, connection errors, with exponential backoff that honours `Retry-After` / `retry-after-ms`) and
timeouts are the openai client's own. An item whose request still fails comes back as a Completion with
finish_reason='error'; errors that would fail every item (bad key, no access, unknown model) raise BackendError at
once. The API key is read by the client from OPENAI_API_KEY and never kept, logged or recorded here.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from models import progress
from models.base import Completion, GenerationConfig, Prompt, Usage, cut_at_stop
from models.errors import BackendError, ConfigError, MissingDependencyError

OPENAI_BASE_URL = "https://api.openai.com/v1"
BACKEND_VERSION = "openai-chat/1"  # bump when a change here changes answers (invalidates prediction caches)
MAX_STOP_SEQUENCES = 4  # OpenAI accepts up to 4 `stop` strings; any others are cut locally
OPENAI_CONCURRENCY = 8  # OpenAI serves many requests at once; its rate limits answer 429, which is retried
LOCAL_CONCURRENCY = 2
"""Default for any other server. A small server computes requests one after another, so each one in flight waits for
the others: with 8 at once, `transformers serve` on 2 cores let requests time out and then computed them anyway
(README, "OpenAI-compatible servers"). Raise it with --openai-concurrency for vLLM and other batching servers."""
PLACEHOLDER_KEY = "not-needed"  # sent to servers that need no key when OPENAI_API_KEY is unset; not a secret

T = TypeVar("T")


def is_openai_url(base_url: str) -> bool:
    """True for OpenAI's own API (paid), including its regional hosts.

    >>> is_openai_url("https://api.openai.com/v1"), is_openai_url("https://eu.api.openai.com/v1")
    (True, True)
    >>> is_openai_url("http://127.0.0.1:8000/v1"), is_openai_url("https://api.openai.com.evil.example/v1")
    (False, False)
    """
    host = (urlsplit(base_url).hostname or "").lower()
    return host == "api.openai.com" or host.endswith(".api.openai.com")


def public_url(url: str) -> str:
    """The URL without user info, query or fragment: safe for records, caches and messages.

    >>> public_url("http://user:secret@gpu-box:8000/v1?key=abc")
    'http://gpu-box:8000/v1'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


_KEY_PATTERN = re.compile(r"\b(sk-[A-Za-z0-9_\-]{3})[A-Za-z0-9_\-*]{6,}")


def redact(text: str) -> str:
    """`text` without the API key: the exact OPENAI_API_KEY value, and anything shaped like an OpenAI key.

    >>> redact("Incorrect API key provided: sk-proj-abcdefghijklmnop.")
    'Incorrect API key provided: sk-pro***.'
    """
    key = os.environ.get("OPENAI_API_KEY")
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return _KEY_PATTERN.sub(r"\1***", text)


@dataclass(frozen=True)
class Endpoint:
    """Where and how chat requests go. Holds no credentials: the client reads OPENAI_API_KEY itself."""

    model: str
    """Model id sent with each request: 'gpt-4o-mini-2024-07-18', 'ft:...', or a served name/path."""
    base_url: str = OPENAI_BASE_URL
    """API root ending in /v1; requests to api.openai.com are paid."""
    max_concurrency: int | None = None
    """Requests in flight at once; None: 8 for OpenAI, LOCAL_CONCURRENCY for any other server."""
    max_retries: int = 5
    """Retries per request by the openai client (429/5xx/connection errors; honours Retry-After)."""
    timeout_s: float = 60.0
    """Seconds per attempt before the client gives up on it (then retries)."""

    def __post_init__(self) -> None:
        if self.max_concurrency is None:
            object.__setattr__(self, "max_concurrency", OPENAI_CONCURRENCY if self.paid else LOCAL_CONCURRENCY)
        if not self.model:
            raise ConfigError("an OpenAI endpoint needs a model id; pass --openai-model NAME.")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ConfigError(f"base URL {public_url(self.base_url)!r} is not http(s); pass e.g. "
                              f"http://127.0.0.1:8000/v1 with --openai-base-url.")
        if self.max_concurrency < 1 or self.max_retries < 0 or not 0 < self.timeout_s < math.inf:
            raise ConfigError(f"bad endpoint limits: max_concurrency={self.max_concurrency} (>= 1), "
                              f"max_retries={self.max_retries} (>= 0), timeout_s={self.timeout_s} (> 0); set them "
                              f"with --openai-concurrency, --openai-max-retries and --openai-timeout.")

    def to_json(self) -> dict[str, Any]:
        """How requests were sent, for the record (no credentials: the URL is made public)."""
        return {"endpoint": public_url(self.base_url), "model": self.model, "max_concurrency": self.max_concurrency,
                "max_retries": self.max_retries, "timeout_s": self.timeout_s}

    @property
    def paid(self) -> bool:
        return is_openai_url(self.base_url)

    @property
    def token_limit_param(self) -> str:
        """OpenAI deprecated `max_tokens` for chat; compatible servers have long accepted only `max_tokens`."""
        return "max_completion_tokens" if self.paid else "max_tokens"


def client_options(base_url: str, *, max_retries: int, timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for OpenAI/AsyncOpenAI; the key stays with the client's own OPENAI_API_KEY lookup."""
    options: dict[str, Any] = {"base_url": base_url, "max_retries": max_retries, "timeout": timeout_s}
    if not os.environ.get("OPENAI_API_KEY"):
        if is_openai_url(base_url):
            raise BackendError(f"OPENAI_API_KEY is not set; it is needed for {public_url(base_url)}. "
                               f"Export it in the environment (ftbench reads it from nowhere else).")
        options["api_key"] = PLACEHOLDER_KEY
    return options


def sync_client(base_url: str = OPENAI_BASE_URL, *, max_retries: int = 5, timeout_s: float = 60.0,
                http_client: Any = None):
    """A synchronous openai.OpenAI client (fine-tuning jobs), with the same key rules as the chat backend."""
    openai = require_openai()
    return openai.OpenAI(**client_options(base_url, max_retries=max_retries, timeout_s=timeout_s),
                         http_client=http_client)


def require_openai():
    try:
        import openai
    except ImportError as err:
        raise MissingDependencyError("the OpenAI backend needs the openai package: pip install 'openai>=1.60' "
                                     "(a dependency of ftbench; reinstall with pip install -e .).") from err
    return openai


class MalformedResponse(ValueError):
    """An HTTP 200 whose body is not a chat completion (not JSON, an HTML page, no choices, no message)."""


RETRY_DELAY_S = (0.5, 8.0)
"""First and largest pause between attempts after a malformed response (the openai client's own backoff)."""


class OpenAIChatModel:
    """Chat completions with greedy decoding (temperature 0), one Completion per prompt, in order.

    A request that still fails after its retries becomes that item's error Completion (finish_reason 'error', with
    the reason: 'http 503 after 6 attempts', 'timeout after 60 s x 6', 'malformed response after 6 attempts: ...');
    it is never an empty answer.
    """

    backend_version = BACKEND_VERSION
    cache_ignores = ("batch_size",)
    """Generation fields that cannot change an API answer (prediction cache keys leave them out)."""
    reports_each_completion = True
    """generate() takes `on_completion`, called as each answer arrives (the prediction cache stores it at once)."""

    def __init__(self, name: str, endpoint: Endpoint, fingerprint: dict[str, Any] | None = None, *,
                 price_family: str | None = None, progress: bool = False,
                 http_client_factory: Callable[[], Any] | None = None):
        self.name = name
        self.endpoint = endpoint
        self.price_family = price_family
        """Key of the price table's [openai.*] section for token-based cost; None for unpriced endpoints."""
        self.progress = progress
        self._http_client_factory = http_client_factory  # tests inject a transport here
        self._fingerprint = {"base": endpoint.model, "adapter": None} | dict(fingerprint or {}) | {
            "backend": "openai-chat", "model_id": endpoint.model, "endpoint": public_url(endpoint.base_url)}
        # Import and check the key now, so the seconds a cold `import openai` takes are not timed as generation.
        self._openai = require_openai()
        self._client_options = client_options(endpoint.base_url, max_retries=endpoint.max_retries,
                                              timeout_s=endpoint.timeout_s)

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.name!r}, model={self.endpoint.model!r}, endpoint={public_url(self.endpoint.base_url)!r})"

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig, *,
                 on_completion: Callable[[int, Completion], None] | None = None) -> list[Completion]:
        if not prompts:
            return []
        return run_sync(self._generate_all(list(prompts), config, on_completion))

    async def _generate_all(self, prompts: list[Prompt], config: GenerationConfig,
                            on_completion: Callable[[int, Completion], None] | None) -> list[Completion]:
        http_client = self._http_client_factory() if self._http_client_factory else None
        # An async client belongs to one event loop, so each call makes its own (milliseconds).
        client = self._openai.AsyncOpenAI(**self._client_options, http_client=http_client)
        semaphore = asyncio.Semaphore(self.endpoint.max_concurrency)
        bar = progress.Phase(f"{self.name} requests", len(prompts), "req", enabled=self.progress)

        async def one(index: int, prompt: Prompt) -> Completion:
            async with semaphore:
                try:
                    completion = await self._one(client, prompt, config)
                finally:
                    bar.update(1)
            if on_completion is not None:
                on_completion(index, completion)
            return completion

        async with client:
            tasks = [asyncio.create_task(one(i, p)) for i, p in enumerate(prompts)]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:  # a fatal error or Ctrl-C: abandoned requests are cancelled, their sockets closed
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                bar.close()

    async def _one(self, client, prompt: Prompt, config: GenerationConfig) -> Completion:
        """One item: the client retries HTTP failures itself; a malformed 200 is retried here the same way."""
        openai, attempts = self._openai, self.endpoint.max_retries + 1
        started = time.perf_counter()
        for attempt in range(1, attempts + 1):
            fatal = failure = None
            try:
                response = await client.chat.completions.create(**self.request(prompt, config))
                return self._completion(response, config, time.perf_counter() - started)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                fatal = self._fatal_message(err)
            except openai.APIError as err:
                return self._failed(started, self._describe_failure(err))
            except ValueError as err:  # JSONDecodeError, MalformedResponse, a body the client could not validate
                failure = f"malformed response after {attempt} attempts: {_clip(str(err))}"
            if fatal:  # raised outside the except block: the error carries no link to the unredacted original
                raise BackendError(fatal)
            if attempt < attempts:
                await asyncio.sleep(min(RETRY_DELAY_S[0] * 2 ** (attempt - 1), RETRY_DELAY_S[1]))
        return self._failed(started, failure)

    def _failed(self, started: float, reason: str | None) -> Completion:
        return Completion("", latency_s=time.perf_counter() - started, finish_reason="error",
                          error=redact(reason or "request failed"))

    def _describe_failure(self, err) -> str:
        """'http 503 after 6 attempts: ...', 'timeout after 60 s x 6', 'connection error after 6 attempts: ...'."""
        openai, retried = self._openai, self.endpoint.max_retries + 1
        if isinstance(err, openai.APITimeoutError):
            return f"timeout after {self.endpoint.timeout_s:g} s x {retried}"
        if isinstance(err, openai.APIConnectionError):
            return f"connection error after {retried} attempts: {_clip(describe_error(err))}"
        status = getattr(err, "status_code", None)
        if status is not None:  # the client retries 408, 409, 429 and 5xx; any other status fails at once
            attempts = retried if status in (408, 409, 429) or status >= 500 else 1
            return f"http {status} after {attempts} attempt{'s' * (attempts > 1)}: {_clip(describe_error(err))}"
        return _clip(describe_error(err))

    def request(self, prompt: Prompt, config: GenerationConfig) -> dict[str, Any]:
        """The chat.completions.create arguments for one prompt (chat turns; the plain text when it has none)."""
        params: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": prompt.api_messages(),
            "temperature": 0,
            self.endpoint.token_limit_param: config.max_new_tokens,
        }
        stops = [s for s in config.stop if s][:MAX_STOP_SEQUENCES]
        if stops:
            params["stop"] = stops
        return params

    def _completion(self, response, config: GenerationConfig, latency_s: float) -> Completion:
        content = _message_content(response)
        # The server stops at `stop` already; cutting again covers servers that ignore it and stops beyond the 4th.
        text, stopped = cut_at_stop(content, config.stop)
        usage = response.usage
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                        completion_tokens=getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency_s,
            finish_reason="stop" if stopped else (response.choices[0].finish_reason or "stop"),
        )

    def _fatal_message(self, err) -> str:
        what = {401: "the API key was refused", 403: "this key has no access", 404: "the model or endpoint was not found"}
        return redact(
            f"{self.name}: {what.get(err.status_code, 'request refused')} by {public_url(self.endpoint.base_url)} "
            f"for model {self.endpoint.model!r} (HTTP {err.status_code}: {describe_error(err)}). Every request would "
            f"fail the same way: check OPENAI_API_KEY, the model id (--openai-model) and the URL (--openai-base-url)."
        )


def _message_content(response: Any) -> str:
    """The first choice's text, or MalformedResponse saying what the body lacks. A content of null (a refusal, a
    tool call) is an empty answer; a missing message is not."""
    if isinstance(response, (str, bytes)):  # the client hands back a non-JSON body as text
        raise MalformedResponse(f"not JSON: {str(response)[:80]!r}")
    choices = getattr(response, "choices", None)
    if not choices:
        raise MalformedResponse("no choices")
    message = getattr(choices[0], "message", None)
    if message is None:
        raise MalformedResponse("choice without a message")
    content = message.content
    if content is not None and not isinstance(content, str):
        raise MalformedResponse(f"message content is {type(content).__name__}, not text")
    return content or ""


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(err: Exception) -> str:
    """Type, status and message of an openai error, in one line."""
    status = getattr(err, "status_code", None)
    message = getattr(err, "message", None) or str(err)
    return f"{type(err).__name__}" + (f" {status}" if status else "") + f": {message}"


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when the caller already runs an event loop."""
    try:
        asyncio.get_running_loop()
        running = True
    except RuntimeError:
        running = False
    if not running:  # outside the except block, so errors raised inside carry no stray context
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:  # a running loop (notebook, async test) cannot be re-entered
        return pool.submit(asyncio.run, coroutine).result()


# --- cost of requests, before sending them -------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestEstimate:
    """What a batch of chat requests should cost, from exact prompt token counts."""

    requests: int
    input_tokens: int
    """Prompt tokens of all requests, counted with the model's encoding and OpenAI's chat framing."""
    output_tokens: int
    """Expected completion tokens of all requests (an upper bound when from max_new_tokens)."""
    input_usd_per_million: float
    output_usd_per_million: float

    @property
    def usd(self) -> float:
        return (self.input_tokens * self.input_usd_per_million + self.output_tokens * self.output_usd_per_million) / 1e6

    @property
    def usd_per_1k_requests(self) -> float:
        return self.usd / self.requests * 1000 if self.requests else 0.0


def estimate_requests(messages: Sequence[Sequence[dict[str, str]]], output_tokens: Sequence[int], encoding: str,
                      prices: dict[str, float]) -> RequestEstimate:
    """Cost of one request per chat in `messages`, with `output_tokens[i]` completion tokens each.

    >>> est = estimate_requests([[{"role": "user", "content": "hello world"}]], [10], "cl100k_base",
    ...                         {"input": 12.0, "output": 16.0})
    >>> est.input_tokens, est.output_tokens, round(est.usd * 1e6)
    (9, 10, 268)
    """
    from models.tokens import chat_tokens

    if len(messages) != len(output_tokens):
        raise ValueError(f"{len(messages)} chats but {len(output_tokens)} output counts")
    return RequestEstimate(len(messages), sum(chat_tokens(m, encoding) for m in messages), sum(output_tokens),
                           prices["input"], prices["output"])
