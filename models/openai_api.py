"""OpenAI chat completions as a Model: OpenAI itself, or any OpenAI-compatible server (vLLM, `transformers serve`).

Requests run concurrently on `AsyncOpenAI` behind a semaphore; `generate()` stays synchronous for its callers. Retries
(429, 408, 409, 5xx, connection errors, with exponential backoff that honours `Retry-After` / `retry-after-ms`) and
timeouts are the openai client's own. An item whose request still fails comes back as a Completion with
finish_reason='error'; errors that would fail every item (bad key, no access, unknown model) raise BackendError at
once. The API key is read by the client from OPENAI_API_KEY and never kept, logged or recorded here.
"""

from __future__ import annotations

import asyncio
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
    max_concurrency: int = 8
    """Requests in flight at once."""
    max_retries: int = 5
    """Retries per request by the openai client (429/5xx/connection errors; honours Retry-After)."""
    timeout_s: float = 60.0
    """Seconds per attempt before the client gives up on it (then retries)."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("an OpenAI endpoint needs a model id; pass --openai-model NAME.")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ConfigError(f"base URL {public_url(self.base_url)!r} is not http(s); pass e.g. "
                              f"http://127.0.0.1:8000/v1 with --openai-base-url.")
        if self.max_concurrency < 1 or self.max_retries < 0 or self.timeout_s <= 0:
            raise ConfigError(f"bad endpoint limits: max_concurrency={self.max_concurrency} (>= 1), "
                              f"max_retries={self.max_retries} (>= 0), timeout_s={self.timeout_s} (> 0).")

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


class OpenAIChatModel:
    """Chat completions with greedy decoding (temperature 0), one Completion per prompt, in order."""

    backend_version = BACKEND_VERSION
    cache_ignores = ("batch_size",)
    """Generation fields that cannot change an API answer (prediction cache keys leave them out)."""

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

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.name!r}, model={self.endpoint.model!r}, endpoint={public_url(self.endpoint.base_url)!r})"

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        if not prompts:
            return []
        return run_sync(self._generate_all(list(prompts), config))

    async def _generate_all(self, prompts: list[Prompt], config: GenerationConfig) -> list[Completion]:
        openai = require_openai()
        options = client_options(self.endpoint.base_url, max_retries=self.endpoint.max_retries,
                                 timeout_s=self.endpoint.timeout_s)
        http_client = self._http_client_factory() if self._http_client_factory else None
        client = openai.AsyncOpenAI(**options, http_client=http_client)
        semaphore = asyncio.Semaphore(self.endpoint.max_concurrency)
        bar = progress.Phase(f"{self.name} requests", len(prompts), "req", enabled=self.progress)
        async with client:
            tasks = [asyncio.create_task(self._one(client, semaphore, p, config, bar)) for p in prompts]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            finally:
                bar.close()

    async def _one(self, client, semaphore: asyncio.Semaphore, prompt: Prompt, config: GenerationConfig,
                   bar) -> Completion:
        openai = require_openai()
        async with semaphore:
            started = time.perf_counter()
            fatal = None
            try:
                response = await client.chat.completions.create(**self.request(prompt, config))
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as err:
                fatal = self._fatal_message(err)
            except openai.APIError as err:
                return Completion("", latency_s=time.perf_counter() - started, finish_reason="error",
                                  error=redact(describe_error(err)))
            finally:
                bar.update(1)
            if fatal:  # raised outside the except block: the error carries no link to the unredacted original
                raise BackendError(fatal)
            return self._completion(response, config, time.perf_counter() - started)

    def request(self, prompt: Prompt, config: GenerationConfig) -> dict[str, Any]:
        """The chat.completions.create arguments for one prompt (chat turns; the plain text when it has none)."""
        params: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": prompt.chat() or [{"role": "user", "content": prompt.text}],
            "temperature": 0,
            self.endpoint.token_limit_param: config.max_new_tokens,
        }
        stops = [s for s in config.stop if s][:MAX_STOP_SEQUENCES]
        if stops:
            params["stop"] = stops
        return params

    def _completion(self, response, config: GenerationConfig, latency_s: float) -> Completion:

        choice = response.choices[0]
        # The server stops at `stop` already; cutting again covers servers that ignore it and stops beyond the 4th.
        text, stopped = cut_at_stop(choice.message.content or "", config.stop)
        usage = response.usage
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                        completion_tokens=getattr(usage, "completion_tokens", 0) or 0),
            latency_s=latency_s,
            finish_reason="stop" if stopped else (choice.finish_reason or "stop"),
        )

    def _fatal_message(self, err) -> str:
        what = {401: "the API key was refused", 403: "this key has no access", 404: "the model or endpoint was not found"}
        return redact(
            f"{self.name}: {what.get(err.status_code, 'request refused')} by {public_url(self.endpoint.base_url)} "
            f"for model {self.endpoint.model!r} (HTTP {err.status_code}: {describe_error(err)}). Every request would "
            f"fail the same way: check OPENAI_API_KEY, the model id (--openai-model) and the URL (--openai-base-url)."
        )


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
