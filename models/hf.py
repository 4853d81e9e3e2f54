"""transformers backend: batched greedy decoding that wastes as little as the hardware allows.

- Prompts are sorted by length and batched, so padding stays small; the padding fraction is reported.
- Every prompt of a task starts with the same instruction block. Its KV cache is computed once per model and
  copied into each batch, so prefill runs only on each item's own tokens (`prefix_reuse`).
- Each sequence stops at its own stop string or EOS, and finished sequences leave the batch at once, so the rest
  decode with a smaller batch. An item's latency is the time until its own answer was finished.
Greedy decoding with an explicit loop; outputs are token-for-token those of `model.generate` (tests check it).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models import progress
from models.base import Completion, GenerationConfig, Prompt, Usage, cut_at_stop  # noqa: F401 (re-exported)

MIN_SHARED_PREFIX = 16  # tokens; below this a shared prefix is not worth a cache copy per batch


@dataclass
class DecodeStats:
    """Counters of the last generate() call, for records and performance benchmarks."""

    prompt_tokens: int = 0
    padded_prompt_tokens: int = 0
    prefix_tokens: int = 0
    """Length of the shared prefix whose KV cache was reused (0: no reuse)."""
    generated_tokens: int = 0

    @property
    def padding_fraction(self) -> float:
        """Share of prefill positions that were padding."""
        return 1 - self.prompt_tokens / self.padded_prompt_tokens if self.padded_prompt_tokens else 0.0


DECODER_VERSION = 2  # bump when a change here can change generated text


class HFModel:
    """A causal LM from transformers, optionally with a LoRA adapter (merged into full-precision weights)."""

    def __init__(self, name: str, model, tokenizer, fingerprint: dict[str, Any], *, prefix_reuse: bool = True,
                 progress: bool = True):
        self.name = name
        self.progress = progress
        """Show a phase line / bar while generating (models.progress decides where and how)."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        self.prefix_reuse = prefix_reuse
        self.pad_id = _pad_id_distinct_from_eos(tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.device = next(model.parameters()).device  # inputs must live where the weights are (CPU or CUDA)
        # Greedy answers depend on the arithmetic too: bf16 or fp32, CPU or CUDA kernels are keyed apart.
        self._fingerprint = dict(fingerprint) | {"dtype": str(model.dtype).removeprefix("torch."),
                                                 "device": self.device.type}
        self.stats = DecodeStats()
        self._prefix_cache: tuple[tuple[int, ...], Any] | None = None
        # transformers 5 renames the forward argument `past_key_values` to `cache`; accept both versions. An unmerged
        # peft model takes **kwargs and hands them on: ask the model underneath.
        inner = model.get_base_model() if hasattr(model, "get_base_model") else model
        self._cache_arg = "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"

    @classmethod
    def with_adapter(cls, name: str, model, tokenizer, fingerprint: dict[str, Any], adapter_dir: Path, *,
                     merge: bool = True) -> "HFModel":
        """Load a peft LoRA adapter onto `model`; merged into the weights (decoding then costs what the base costs)
        unless `merge` is False (quantized bases: see `should_merge`)."""
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(model, str(adapter_dir))
        return cls(name, tuned.merge_and_unload() if merge else tuned, tokenizer, fingerprint)

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)

    @property
    def backend_version(self) -> str:
        """Part of the prediction cache key: a new decoder or library version may change greedy ties."""
        import transformers

        return f"ftbench-hf/{DECODER_VERSION} transformers/{transformers.__version__} torch/{torch.__version__}"

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        token_ids = self.tokenizer([p.text for p in prompts]).input_ids
        prefix = self._shared_prefix(token_ids) if self.prefix_reuse else ()
        self.stats = DecodeStats(prefix_tokens=len(prefix))
        # Longest first: batches hold similar lengths, and a memory error shows up at once.
        order = sorted(range(len(prompts)), key=lambda i: -len(token_ids[i]))
        results: list[Completion | None] = [None] * len(prompts)
        with progress.Phase(f"generating ({self.name})", len(prompts), "item", enabled=self.progress) as bar:
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                for i, completion in zip(batch, self._decode_batch([token_ids[i] for i in batch], prefix, config)):
                    results[i] = completion
                bar.update(len(batch))
        return results  # type: ignore[return-value]

    def _shared_prefix(self, token_ids: list[list[int]]) -> tuple[int, ...]:
        """Longest common token prefix of all prompts, leaving each prompt at least one token of its own."""
        if len(token_ids) < 2:
            return ()
        shortest = min(len(ids) for ids in token_ids) - 1
        length = 0
        first = token_ids[0]
        while length < shortest and all(ids[length] == first[length] for ids in token_ids):
            length += 1
        return tuple(first[:length]) if length >= MIN_SHARED_PREFIX else ()

    def _prefix_kv(self, prefix: tuple[int, ...]):
        """The prefix's KV cache, computed once per model and prefix."""
        if self._prefix_cache is None or self._prefix_cache[0] != prefix:
            from transformers import DynamicCache

            cache = DynamicCache()
            self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, **{self._cache_arg: cache})
            self._prefix_cache = (prefix, cache)
        return self._prefix_cache[1]

    def _decode_batch(self, token_ids: list[list[int]], prefix: tuple[int, ...], config: GenerationConfig) -> list[Completion]:
        from transformers import DynamicCache

        started = time.perf_counter()
        suffixes = [ids[len(prefix) :] for ids in token_ids]
        width = max(len(s) for s in suffixes)
        input_ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in suffixes], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=self.device)
        mask = torch.cat([torch.ones(len(suffixes), len(prefix), dtype=mask.dtype, device=self.device), mask], dim=1)
        if prefix:
            cache = copy.deepcopy(self._prefix_kv(prefix))
            cache.batch_repeat_interleave(len(suffixes))
        else:
            cache = DynamicCache()
        self.stats.prompt_tokens += sum(len(s) for s in suffixes)
        self.stats.padded_prompt_tokens += input_ids.numel()

        rows = list(range(len(suffixes)))  # batch row -> item, shrinking as items finish
        answers: list[list[int]] = [[] for _ in suffixes]
        texts = [""] * len(suffixes)
        finish: list[tuple[str, float] | None] = [None] * len(suffixes)
        step_ids = input_ids
        for _ in range(config.max_new_tokens):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1] :]
            logits = self.model(input_ids=step_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                **{self._cache_arg: cache}).logits[:, -1]
            next_ids = logits.argmax(-1)
            keep = []
            for row, item in enumerate(rows):
                token = int(next_ids[row])
                reason = self._append(token, item, answers, texts, config.stop)
                if reason:
                    finish[item] = (reason, time.perf_counter() - started)
                else:
                    keep.append(row)
            if not keep:
                break
            if len(keep) < len(rows):  # finished sequences leave the batch
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, next_ids = mask[index], next_ids[index]
                rows = [rows[r] for r in keep]
            mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype, device=self.device)], dim=1)
            step_ids = next_ids[:, None]
        elapsed = time.perf_counter() - started
        self.stats.generated_tokens += sum(len(a) for a in answers)
        share = elapsed / len(suffixes)  # the machine was busy for the whole batch: each item carries its share
        return [dataclasses.replace(self._completion(token_ids[i], answers[i], texts[i], finish[i] or ("length", elapsed),
                                                     config), machine_s=share)
                for i in range(len(suffixes))]

    def _append(self, token: int, item: int, answers, texts, stops: Sequence[str]) -> str | None:
        """Add a token to an item's answer; say 'stop' when the item is finished."""
        answers[item].append(token)
        if token in self.eos_ids:
            return "stop"
        texts[item] = self.tokenizer.decode(answers[item], skip_special_tokens=True)
        return "stop" if any(stop and stop in texts[item] for stop in stops) else None

    def _completion(self, prompt_ids, answer_ids, text, finish, config: GenerationConfig) -> Completion:
        reason, latency = finish
        text, _ = cut_at_stop(text, config.stop)
        return Completion(text=text, usage=Usage(prompt_tokens=len(prompt_ids), completion_tokens=len(answer_ids)),
                          latency_s=latency, finish_reason=reason)


def should_merge(quantization: str | None) -> bool:
    """Merge a LoRA adapter into its base only when the base is full precision. Merging into 8-bit/4-bit weights
    rounds base + adapter onto the quantized grid, so the evaluated model would not be the trained one (peft's own
    warning); unmerged, the adapter runs beside the quantized layers exactly as in training."""
    return quantization is None


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def _pad_id_distinct_from_eos(tokenizer) -> int:
    """A pad id that is not EOS, so pads can be told from real tokens (SmolLM2 pads with its EOS)."""
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer.pad_token_id
    for token in ("<|endoftext|>", "<pad>", "<unk>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id not in (tokenizer.eos_token_id, tokenizer.unk_token_id, None):
            return token_id
    return tokenizer.eos_token_id
