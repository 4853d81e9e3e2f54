"""transformers backend: batched greedy decoding with left padding, prompts grouped by length, stop strings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import StoppingCriteria

from models.base import Completion, GenerationConfig, Prompt, Usage


class HFModel:
    """A causal LM from transformers, optionally with a LoRA adapter merged into its weights."""

    def __init__(self, name: str, model, tokenizer, fingerprint: dict[str, Any]):
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only: new tokens must follow each prompt directly
        self._fingerprint = dict(fingerprint)
        self.pad_id = _pad_id_distinct_from_eos(tokenizer)

    @classmethod
    def with_adapter(cls, name: str, model, tokenizer, fingerprint: dict[str, Any], adapter_dir: Path) -> "HFModel":
        """Load a peft LoRA adapter onto `model` and merge it, so decoding costs what the base costs."""
        from peft import PeftModel

        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
        return cls(name, merged, tokenizer, fingerprint)

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        lengths = [len(ids) for ids in self.tokenizer([p.text for p in prompts]).input_ids]
        # Longest first, so batches hold similar lengths (little padding) and a memory error shows up at once.
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        results: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            for i, completion in zip(batch, self._generate_batch([prompts[i].text for i in batch], config)):
                results[i] = completion
        return results  # type: ignore[return-value]

    def _generate_batch(self, texts: list[str], config: GenerationConfig) -> list[Completion]:
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True)
        started = time.perf_counter()
        output = self.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=config.max_new_tokens,
            stopping_criteria=[StopOnStrings(self.tokenizer, config.stop, inputs.input_ids.shape[1])],
            pad_token_id=self.pad_id,
        )
        latency = (time.perf_counter() - started) / len(texts)
        new_tokens = output[:, inputs.input_ids.shape[1] :]
        completions = []
        for prompt_mask, ids in zip(inputs.attention_mask, new_tokens):
            generated = ids[ids != self.pad_id]
            text, stopped = cut_at_stop(self.tokenizer.decode(generated, skip_special_tokens=True), config.stop)
            hit_eos = bool(len(generated)) and int(generated[-1]) in self._eos_ids()
            completions.append(
                Completion(
                    text=text,
                    usage=Usage(prompt_tokens=int(prompt_mask.sum()), completion_tokens=len(generated)),
                    latency_s=latency,
                    finish_reason="stop" if stopped or hit_eos else "length",
                )
            )
        return completions

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        return set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()


class StopOnStrings(StoppingCriteria):
    """Per-sequence stop on the generated text only.

    transformers' own `stop_strings` also matches across the prompt boundary (prompt "a", stop "aa" ends after
    one generated "a"), which would stop early without a stop string in the answer.
    """

    def __init__(self, tokenizer, stops: Sequence[str], prompt_length: int):
        self.tokenizer, self.stops, self.prompt_length = tokenizer, [s for s in stops if s], prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([any(stop in text for stop in self.stops) for text in texts], device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` at the earliest stop string; say whether one was found.

    >>> cut_at_stop("SELECT 1\\nmore", ["\\n"])
    ('SELECT 1', True)
    >>> cut_at_stop("no stop", ["\\n", ";"])
    ('no stop', False)
    """
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _pad_id_distinct_from_eos(tokenizer) -> int:
    """A pad id that the model never emits as an answer token, so pads can be told from real tokens.

    SmolLM2 pads with its EOS; padding with `<|endoftext|>` (id 0) instead keeps token counts exact.
    """
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id:
        return tokenizer.pad_token_id
    for token in ("<|endoftext|>", "<pad>", "<unk>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id not in (tokenizer.eos_token_id, tokenizer.unk_token_id, None):
            return token_id
    return tokenizer.eos_token_id
