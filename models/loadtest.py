"""A concurrency sweep against an OpenAI-compatible text completions endpoint: throughput and latency per level.

Why ftbench drives the load itself instead of GuideLLM (vLLM's load generator): GuideLLM is not installable offline
here, and its sweeps send synthetic or dataset prompts, while ftbench must send the task's own eval prompts with the
task's stop strings and greedy decoding, and keep every answer so the served model can be proven to be the evaluated
one (same answers as in-process). A closed loop of `level` workers on the project's async OpenAI client does that in
one small module.

Each level keeps exactly `level` requests in flight (a worker sends its next request when its last one ends) over
max(requests_per_level x level, len(prompts)) requests, prompt i % len(prompts) for request i. Requests stream, so
time to first token is measured; they are never retried (a retry would hide an error and distort latency), and each
is bounded by `timeout_s`, so a sweep never hangs. The sweep rises until throughput gains less than `min_gain` for
FLAT_LEVELS levels in a row, p95 latency passes the SLO, errors appear, or the server stops answering; levels
measured before that are always kept.
Percentiles interpolate linearly between order statistics, as benchmarks/record.py does.

Prove equal answers with `stream=False`: `transformers serve` decodes a stream token by token and holds back an
incomplete UTF-8 character at the end, so a streamed answer can lack what the whole decode (and HFModel) ends with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from models.base import cut_at_stop
from models.errors import ConfigError
from models.openai_api import client_options, describe_error, redact, require_openai, run_sync

DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32, 64)
FLAT_LEVELS = 2
"""Levels in a row without a throughput gain before the sweep stops: one flat level can be noise."""
PROBE_TIMEOUT_S = 5.0


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in [0, 100]) as benchmarks.stats.percentile computes it; None for no values.

    >>> percentile([1, 2, 3, 4], 50), percentile([5.0], 95), percentile([], 50)
    (2.5, 5.0, None)
    """
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class RequestResult:
    """One request of a level."""

    latency_s: float
    """From sending the request to its last byte."""
    ttft_s: float | None
    """From sending to the first chunk with text; None when no text arrived or the request did not stream."""
    output_tokens: int
    """The server's completion token count (usage), else the number of text chunks received."""
    text: str
    """The answer cut at the first stop string ('' for a failed request)."""
    error: str | None = None


@dataclass(frozen=True)
class LevelResult:
    """What one concurrency level measured. Latency and TTFT percentiles are over answered requests only."""

    concurrency: int
    requests: int
    errors: int
    error_reasons: dict[str, int]
    """Failure message -> how many requests failed so."""
    duration_s: float
    requests_per_s: float
    """Answered requests per second of the level's wall time."""
    output_tokens_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_p99_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    answers: tuple[str | None, ...]
    """Per request, in request order (request i sent prompt i % len(prompts)); None where it failed."""

    def to_json(self, answers: bool = False) -> dict[str, Any]:
        """Strict JSON (a non-finite float as null); the answers only when asked for (they are long)."""
        data = {key: None if isinstance(value, float) and not math.isfinite(value) else value
                for key, value in dataclasses.asdict(self).items()}
        if answers:
            data["answers"] = list(self.answers)
        else:
            del data["answers"]
        return data

    @classmethod
    def from_requests(cls, concurrency: int, results: Sequence[RequestResult], duration_s: float) -> "LevelResult":
        answered = [r for r in results if r.error is None]
        latencies = [r.latency_s for r in answered]
        ttfts = [r.ttft_s for r in answered if r.ttft_s is not None]
        per_s = (lambda n: n / duration_s) if duration_s > 0 else (lambda n: 0.0)
        return cls(
            concurrency=concurrency, requests=len(results), errors=len(results) - len(answered),
            error_reasons=dict(Counter(r.error for r in results if r.error is not None)),
            duration_s=duration_s, requests_per_s=per_s(len(answered)),
            output_tokens_per_s=per_s(sum(r.output_tokens for r in answered)),
            latency_p50_s=percentile(latencies, 50), latency_p95_s=percentile(latencies, 95),
            latency_p99_s=percentile(latencies, 99), ttft_p50_s=percentile(ttfts, 50),
            ttft_p95_s=percentile(ttfts, 95), answers=tuple(None if r.error else r.text for r in results),
        )


@dataclass(frozen=True)
class SweepResult:
    """The levels measured, in rising concurrency, and why the sweep stopped there."""

    model: str
    levels: tuple[LevelResult, ...]
    stopped_by: str
    server_failed: bool
    """True when the sweep ended because the server stopped answering (the last level tried is not in `levels`)."""
    latency_slo_s: float
    max_tokens: int
    stop: tuple[str, ...]
    prompts: int

    @property
    def sustainable(self) -> LevelResult | None:
        """The level with the most requests/s among those with p95 within the SLO and no error (None if none):
        the throughput a deployment can promise at this SLO."""
        within = [lv for lv in self.levels if lv.errors == 0 and lv.latency_p95_s is not None
                  and lv.latency_p95_s <= self.latency_slo_s]
        return max(within, key=lambda lv: lv.requests_per_s, default=None)

    def mismatches(self, expected: Sequence[str]) -> list[dict[str, Any]]:
        """Answers that differ from `expected[j]` (the in-process answer to prompt j), with level and request index;
        failed requests are errors, not mismatches."""
        if len(expected) != self.prompts:
            raise ValueError(f"{len(expected)} expected answers for a sweep over {self.prompts} prompts")
        return [{"concurrency": level.concurrency, "request": i, "prompt": i % self.prompts,
                 "served": answer, "expected": expected[i % self.prompts]}
                for level in self.levels for i, answer in enumerate(level.answers)
                if answer is not None and answer != expected[i % self.prompts]]

    def to_json(self, answers: bool = False) -> dict[str, Any]:
        """Strict JSON (no NaN or infinity); the answers only when asked for (they are long)."""
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "levels": [level.to_json(answers) for level in self.levels], "stop": list(self.stop),
                "sustainable_concurrency": getattr(self.sustainable, "concurrency", None)}


def sweep(base_url: str, model: str, prompts: Sequence[str], *, latency_slo_s: float, max_tokens: int,
          stop: Sequence[str] = (), levels: Sequence[int] = DEFAULT_LEVELS, requests_per_level: int = 4,
          min_gain: float | None = 0.05, timeout_s: float = 120.0, stream: bool = True, warmup: int = 1,
          on_level: Callable[[LevelResult], None] | None = None) -> SweepResult:
    """Measure `levels` in rising order against `base_url` (an OpenAI-compatible /v1 root) for `model`.

    `prompts` are the exact texts to complete (Prompt.text); greedy (temperature 0), up to `max_tokens`, stopping at
    `stop`. `warmup` requests are sent first and not measured (a fresh server loads kernels on its first request).
    `on_level` is called with each measured level as it ends. `min_gain` None runs every level up to the SLO.
    """
    _check_arguments(prompts, latency_slo_s, max_tokens, levels, requests_per_level, min_gain, timeout_s)
    runner = _Runner(base_url, model, list(prompts), max_tokens, tuple(s for s in stop if s), timeout_s, stream)
    measured, stopped_by, failed = run_sync(runner.sweep(list(levels), latency_slo_s, requests_per_level, min_gain,
                                                         warmup, on_level))
    return SweepResult(model=model, levels=tuple(measured), stopped_by=stopped_by, server_failed=failed,
                       latency_slo_s=latency_slo_s, max_tokens=max_tokens, stop=runner.stop, prompts=len(prompts))


def _check_arguments(prompts, latency_slo_s, max_tokens, levels, requests_per_level, min_gain, timeout_s) -> None:
    problems = []
    if not prompts:
        problems.append("no prompts to send")
    if not (isinstance(latency_slo_s, (int, float)) and 0 < latency_slo_s < math.inf):
        problems.append(f"latency_slo_s={latency_slo_s!r} (a positive number of seconds)")
    if not 0 < timeout_s < math.inf:
        problems.append(f"timeout_s={timeout_s!r} (a positive number of seconds)")
    if max_tokens < 1 or requests_per_level < 1:
        problems.append(f"max_tokens={max_tokens}, requests_per_level={requests_per_level} (both >= 1)")
    if not levels or any(b <= a for a, b in zip(levels, levels[1:])) or levels[0] < 1:
        problems.append(f"levels={tuple(levels)} (positive and strictly rising, e.g. 1,2,4,8)")
    if min_gain is not None and not 0 <= min_gain < math.inf:
        problems.append(f"min_gain={min_gain!r} (a share >= 0, e.g. 0.05 for 5%; None: every level)")
    if problems:
        raise ConfigError("bad load test settings: " + "; ".join(problems) + ".")


class _Runner:
    """The sweep's async side: one client, one level after another."""

    def __init__(self, base_url: str, model: str, prompts: list[str], max_tokens: int, stop: tuple[str, ...],
                 timeout_s: float, stream: bool):
        self.model, self.prompts, self.max_tokens, self.stop = model, prompts, max_tokens, stop
        self.timeout_s, self.stream = timeout_s, stream
        self.openai = require_openai()
        # No retries: a retried request would hide an error and report one request's latency as another's.
        self.options = client_options(base_url, max_retries=0, timeout_s=timeout_s)

    async def sweep(self, levels, slo_s, requests_per_level, min_gain, warmup, on_level):
        measured: list[LevelResult] = []
        async with self.openai.AsyncOpenAI(**self.options) as client:
            for index in range(warmup):
                await self._one(client, index)
            for concurrency in levels:
                count = max(requests_per_level * concurrency, len(self.prompts))
                level = await self._level(client, concurrency, count)
                if level.errors and not await self._answers(client):
                    first = next(iter(level.error_reasons))
                    return measured, (f"the server stopped answering at concurrency {concurrency} "
                                      f"({level.requests - level.errors} of {level.requests} requests answered; "
                                      f"first error: {first}); kept the {len(measured)} level(s) measured "
                                      f"before it"), True
                measured.append(level)
                if on_level is not None:
                    on_level(level)
                reason = _stop_reason(measured, slo_s, min_gain)
                if reason:
                    return measured, reason, False
        return measured, f"all {len(levels)} levels run", False

    async def _level(self, client, concurrency: int, count: int) -> LevelResult:
        results: list[RequestResult | None] = [None] * count
        next_index = iter(range(count))

        async def worker() -> None:  # closed loop: a new request leaves only when this worker's last one ended
            for index in next_index:
                results[index] = await self._one(client, index)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return LevelResult.from_requests(concurrency, results, time.perf_counter() - started)  # type: ignore[arg-type]

    async def _one(self, client, index: int) -> RequestResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):  # the whole request, however slowly a stream trickles
                text, tokens, ttft = await (self._streamed if self.stream else self._whole)(client, index, started)
        except TimeoutError:
            return self._failed(started, f"timeout after {self.timeout_s:g} s")
        except self.openai.APIError as err:
            return self._failed(started, _describe(err, self.openai))
        except ValueError as err:  # a body the client could not parse
            return self._failed(started, f"malformed response: {err}")
        return RequestResult(time.perf_counter() - started, ttft, tokens, cut_at_stop(text, self.stop)[0])

    def _params(self, index: int) -> dict[str, Any]:
        params = {"model": self.model, "prompt": self.prompts[index % len(self.prompts)], "temperature": 0,
                  "max_tokens": self.max_tokens}
        return params | ({"stop": list(self.stop)} if self.stop else {})

    async def _streamed(self, client, index: int, started: float) -> tuple[str, int, float | None]:
        stream = await client.completions.create(**self._params(index), stream=True,
                                                 stream_options={"include_usage": True})
        parts, ttft, usage_tokens = [], None, None
        async with stream:
            async for chunk in stream:
                text = chunk.choices[0].text if chunk.choices else ""
                if text:
                    ttft = ttft if ttft is not None else time.perf_counter() - started
                    parts.append(text)
                if chunk.usage is not None:
                    usage_tokens = chunk.usage.completion_tokens
        return "".join(parts), usage_tokens if usage_tokens is not None else len(parts), ttft

    async def _whole(self, client, index: int, started: float) -> tuple[str, int, None]:
        response = await client.completions.create(**self._params(index))
        if not response.choices:
            raise ValueError("no choices")
        usage = response.usage.completion_tokens if response.usage else 0
        return response.choices[0].text or "", usage, None

    def _failed(self, started: float, reason: str) -> RequestResult:
        return RequestResult(time.perf_counter() - started, None, 0, "", redact(reason))

    async def _answers(self, client) -> bool:
        """Whether the server still answers GET /models (after a level with errors: dead or just overloaded?)."""
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await client.models.list()
            return True
        except (TimeoutError, self.openai.APIError):
            return False


def _stop_reason(levels: Sequence[LevelResult], slo_s: float, min_gain: float | None) -> str | None:
    """Why not to try a higher level after the last one, or None to go on."""
    last = levels[-1]
    if last.errors:
        return f"{last.errors} of {last.requests} requests failed at concurrency {last.concurrency}"
    if last.latency_p95_s is not None and last.latency_p95_s > slo_s:
        return f"p95 latency {last.latency_p95_s:.3g} s passed the SLO {slo_s:g} s at concurrency {last.concurrency}"
    if min_gain is not None and len(levels) > FLAT_LEVELS:
        best = max(levels[:-FLAT_LEVELS], key=lambda lv: lv.requests_per_s)
        if all(lv.requests_per_s < best.requests_per_s * (1 + min_gain) for lv in levels[-FLAT_LEVELS:]):
            return (f"throughput stopped rising: {last.requests_per_s:.3g} req/s at concurrency {last.concurrency} "
                    f"vs {best.requests_per_s:.3g} at {best.concurrency} (less than {min_gain:.0%} more for "
                    f"{FLAT_LEVELS} levels in a row)")
    return None


def _describe(err, openai) -> str:
    """A short failure message that is the same for every request failing the same way (so reasons group)."""
    if isinstance(err, openai.APITimeoutError):
        return "timeout (client)"
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__
        return f"connection error: {type(cause).__name__ if cause else 'APIConnectionError'}"
    text = describe_error(err)
    return text if len(text) <= 200 else text[:197] + "..."
