"""A prediction cache for any backend: a rerun of an unchanged benchmark sends no request and pays nothing.

`CachedModel(model, cache)` is itself a Model: it answers what the cache holds (marked `cached=True`, with the
original latency and usage) and sends only the misses to the wrapped model, in one batch, in order.

The key covers everything that decides an answer: the model's fingerprint (weights or model id, adapter, and for
HTTP backends the endpoint), the prompt (text and messages), the generation parameters, a backend version string and
this file's format version. Errors are never stored, so a failed item is retried on the next run.

Storage: one small JSON file per entry, `<root>/<model hash>/<key[:2]>/<key>.json`, rather than one sqlite file.
Each write is a temp file renamed into place, which is atomic on POSIX, so concurrent processes (pytest-xdist
workers, two terminals) need no lock: readers see a whole entry or none, and two writers of one key write the same
answer. A corrupt or foreign file costs one entry, is treated as a miss and rewritten; one model's cache is deleted
with one folder. sqlite would give the same safety with locking that is fragile on network file systems.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.base import Completion, GenerationConfig, Model, Prompt, Usage
from models.files import write_atomic

FORMAT = 1  # bump when an entry's layout or the key's ingredients change


def prediction_cache_dir() -> Path:
    """$FTBENCH_PREDICTION_CACHE, else <ftbench cache>/predictions."""
    from models.weights import cache_root

    return Path(os.environ.get("FTBENCH_PREDICTION_CACHE") or cache_root() / "predictions")


def _digest(value: Any) -> str:
    # surrogatepass: a lone surrogate in a prompt hashes like any other code point (valid text hashes as before)
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def generation_key(model: Model, config: GenerationConfig) -> dict[str, Any]:
    """The generation parameters that can change an answer.

    A backend names the knobs that cannot (an API ignores `batch_size`) in `cache_ignores`, so changing them does
    not throw away paid answers; a local backend keeps everything, since batching can move greedy ties.
    """
    ignored = set(getattr(model, "cache_ignores", ()))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_json().items() if k not in ignored}


def backend_version(model: Model) -> str:
    """The backend's own version string (bumped when its answers change), else its class name."""
    return str(getattr(model, "backend_version", None) or f"{type(model).__module__}.{type(model).__qualname__}")


@dataclass(frozen=True)
class PredictionCache:
    """Completions on disk, one JSON file per (model, prompt, parameters)."""

    root: Path
    """Folder holding one subfolder per model fingerprint."""

    @classmethod
    def default(cls) -> "PredictionCache":
        return cls(prediction_cache_dir())

    def model_dir(self, model: Model) -> Path:
        return self.root / _digest(model.fingerprint())[:16]

    def key(self, model: Model, prompt: Prompt, config: GenerationConfig) -> str:
        """sha256 over model fingerprint, prompt, generation parameters, backend version and cache format.

        >>> from models.base import Message
        >>> class M:
        ...     name = "m"
        ...     def fingerprint(self): return {"base": "m", "endpoint": "http://127.0.0.1:1/v1"}
        >>> cache, config = PredictionCache(Path("/nonexistent")), GenerationConfig()
        >>> a = cache.key(M(), Prompt("q", (Message("user", "q"),)), config)
        >>> a == cache.key(M(), Prompt("q", (Message("user", "q"),)), config)
        True
        >>> a == cache.key(M(), Prompt("q", (Message("user", "Q"),)), config)
        False
        >>> a == cache.key(M(), Prompt("q", (Message("user", "q"),)), GenerationConfig(max_new_tokens=5))
        False
        """
        return _digest({
            "format": FORMAT,
            "model": model.fingerprint(),
            "backend": backend_version(model),
            "prompt": {"text": prompt.text, "messages": prompt.chat()},
            "generation": generation_key(model, config),
        })

    def path(self, model: Model, key: str) -> Path:
        return self.model_dir(model) / key[:2] / f"{key}.json"

    def get(self, model: Model, key: str) -> Completion | None:
        """The stored completion, or None when absent, unreadable or not this key's (then it is rewritten later)."""
        try:
            entry = json.loads(self.path(model, key).read_text(encoding="utf-8"))
            return _completion_from_entry(entry, key)
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def put(self, model: Model, key: str, completion: Completion) -> None:
        """Store a completion atomically; an error is never stored."""
        if completion.finish_reason == "error" or completion.error is not None:
            return
        entry = {
            "format": FORMAT, "key": key, "text": completion.text, "finish_reason": completion.finish_reason,
            "usage": dataclasses.asdict(completion.usage), "latency_s": completion.latency_s,
            "machine_s": completion.machine_s,
        }
        # ASCII-escaped JSON stores any code point losslessly, lone surrogates from a model's answer included
        path = self.path(model, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(entry), durable=False)  # a lost entry is a miss; this runs in timed generation


def _completion_from_entry(entry: dict[str, Any], key: str) -> Completion:
    if entry.get("format") != FORMAT or entry.get("key") != key:
        raise ValueError("foreign or outdated entry")
    usage = entry["usage"]
    if not isinstance(entry["text"], str) or not isinstance(entry["finish_reason"], str):
        raise TypeError("malformed entry")
    return Completion(
        text=entry["text"],
        usage=Usage(prompt_tokens=int(usage["prompt_tokens"]), completion_tokens=int(usage["completion_tokens"])),
        latency_s=float(entry["latency_s"]),
        machine_s=None if entry.get("machine_s") is None else float(entry["machine_s"]),  # absent in older entries
        finish_reason=entry["finish_reason"],
        cached=True,
    )


class CachedModel:
    """A Model that answers from a PredictionCache and sends only the misses to the wrapped model."""

    def __init__(self, model: Model, cache: PredictionCache, *, save_every: int = 64):
        self.model, self.cache = model, cache
        self.name = model.name
        self.save_every = save_every
        """Misses go to the model in chunks of this many, each stored before the next is sent: an interrupted
        run keeps what it already paid for."""
        self.last_misses = 0
        """How many prompts the last generate() sent to the wrapped model."""

    def __repr__(self) -> str:
        return f"CachedModel({self.model!r}, root={str(self.cache.root)!r})"

    def __getattr__(self, attribute: str) -> Any:
        # Backend details the runner reads (pricing, endpoint) come from the wrapped model.
        if attribute == "model":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(attribute)
        return getattr(self.model, attribute)

    def fingerprint(self) -> dict[str, Any]:
        return self.model.fingerprint()

    def misses(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[int]:
        """Indices of the prompts the cache cannot answer (what a generate() call would send, and pay for)."""
        return [i for i, p in enumerate(prompts) if self.cache.get(self.model, self.cache.key(self.model, p, config)) is None]

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        keys = [self.cache.key(self.model, p, config) for p in prompts]
        results: list[Completion | None] = [self.cache.get(self.model, k) for k in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        self.last_misses = len(missing)
        if getattr(self.model, "reports_each_completion", False):  # an API: store each answer as it arrives
            def store(position: int, completion: Completion) -> None:
                self.cache.put(self.model, keys[missing[position]], completion)

            fresh = self.model.generate([prompts[i] for i in missing], config, on_completion=store)
            for i, completion in zip(missing, fresh, strict=True):
                results[i] = completion
            return results  # type: ignore[return-value]
        for start in range(0, len(missing), self.save_every):
            chunk = missing[start : start + self.save_every]
            fresh = self.model.generate([prompts[i] for i in chunk], config)
            for i, completion in zip(chunk, fresh, strict=True):
                self.cache.put(self.model, keys[i], completion)
                results[i] = completion
        return results  # type: ignore[return-value]
