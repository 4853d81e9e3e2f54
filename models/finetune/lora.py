"""LoRA fine-tuning with peft, top to bottom: key -> (cache hit | setup -> fit -> save).

An adapter is cached under a content hash of base weights + recipe + training pairs, so rerunning a benchmark
reuses it, and any change to one of the three trains a new one. Training writes into a temporary folder that is
renamed into place only when complete, so a killed run never leaves an adapter that a benchmark would pick up.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from models.errors import ConfigError
from models.finetune.recipe import LoraRecipe
from models.pricing import detect_hardware
from models.weights import cache_root

TRAINER_VERSION = 1  # bump when a change to this file changes the adapters it produces
IGNORE = -100  # label id that the loss skips


@dataclass(frozen=True)
class TrainingPair:
    """One supervised example: the evaluation prompt text and the answer that should follow it."""

    prompt: str
    completion: str


@dataclass(frozen=True)
class Adapter:
    """A trained LoRA adapter on disk."""

    path: Path
    key: str
    """Content hash of base + recipe + pairs (+ trainer version)."""
    info: dict[str, Any]
    """What training measured: wall time, hardware, steps, tokens, padding, losses."""
    cached: bool
    """True when this run reused an adapter instead of training."""


def adapter_cache() -> Path:
    """Where adapters are cached: $FTBENCH_ADAPTER_CACHE, else <ftbench cache>/adapters."""
    return Path(os.environ.get("FTBENCH_ADAPTER_CACHE") or cache_root() / "adapters")


def adapter_key(base_fingerprint: dict[str, Any], recipe: LoraRecipe, pairs: Sequence[TrainingPair]) -> str:
    """sha256 over everything that decides the adapter's weights."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"base": base_fingerprint, "recipe": recipe.to_json(), "trainer": TRAINER_VERSION},
                             sort_keys=True).encode())
    for pair in pairs:
        digest.update(json.dumps([pair.prompt, pair.completion]).encode())
    return digest.hexdigest()


def finetune(
    load_base: Callable[[], tuple[Any, Any, dict[str, Any]]],
    base_fingerprint: dict[str, Any],
    pairs: Sequence[TrainingPair],
    recipe: LoraRecipe,
    *,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Adapter:
    """The adapter for (base, recipe, pairs): from the cache, or trained now and published atomically."""
    if not pairs:
        raise ConfigError("no training pairs: the task's train split is empty; check --data and the train file.")
    key = adapter_key(base_fingerprint, recipe, pairs)
    target = (cache_dir or adapter_cache()) / key[:24]
    if (target / "train_info.json").exists():
        return Adapter(target, key, json.loads((target / "train_info.json").read_text()), cached=True)

    model, tokenizer, _ = load_base()
    peft_model = _setup(model, recipe)
    examples, truncated = _tokenize(tokenizer, pairs, recipe)
    info = _fit(peft_model, examples, recipe, pad_id=_pad_id(tokenizer), progress=progress)
    info.update(key=key, base=base_fingerprint, pairs=len(pairs), truncated_pairs=truncated)
    _save(peft_model, recipe, info, target)
    return Adapter(target, key, info, cached=False)


def _setup(model, recipe: LoraRecipe):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(recipe.seed)
    config = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=list(recipe.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _tokenize(tokenizer, pairs: Sequence[TrainingPair], recipe: LoraRecipe) -> tuple[list[dict[str, list[int]]], int]:
    """input_ids and labels per pair, and how many pairs were cut to max_length.

    The prompt is tokenized alone, exactly as at evaluation time, then the answer and EOS are appended.
    A pair cut so short that no labelled token is left teaches nothing and is dropped.
    """
    examples, truncated = [], 0
    for pair in pairs:
        prompt_ids = tokenizer(pair.prompt).input_ids
        answer_ids = tokenizer(pair.completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids = (prompt_ids + answer_ids)[: recipe.max_length]
        truncated += len(prompt_ids) + len(answer_ids) > recipe.max_length
        labels = (list(ids) if recipe.loss_on_prompt else [IGNORE] * len(prompt_ids) + answer_ids)[: len(ids)]
        if any(label != IGNORE for label in labels[1:]):
            examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        raise ConfigError(f"every training pair is longer than max_length={recipe.max_length} tokens before its "
                          f"answer starts; raise max_length in the recipe.")
    return examples, truncated


def _fit(model, examples: list[dict[str, list[int]]], recipe: LoraRecipe, *, pad_id: int, progress: bool) -> dict[str, Any]:
    from transformers import get_linear_schedule_with_warmup

    steps_per_epoch = math.ceil(len(examples) / (recipe.batch_size * recipe.grad_accum))
    total_steps = max(1, min(recipe.max_steps, math.ceil(recipe.epochs * steps_per_epoch)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, min(recipe.warmup_steps, total_steps - 1), total_steps)
    batches = _batches(examples, recipe)
    real_tokens = padded_tokens = 0
    losses: list[float] = []
    model.train()
    started = time.perf_counter()
    bar = tqdm(range(total_steps), desc="LoRA fine-tune", unit="step", disable=not progress)
    for _ in bar:
        step_loss = 0.0
        for _ in range(recipe.grad_accum):
            batch = _collate(next(batches), pad_id)
            loss = completion_loss(model, **batch) / recipe.grad_accum
            loss.backward()
            step_loss += loss.item()
            real_tokens += int(batch["attention_mask"].sum())
            padded_tokens += batch["attention_mask"].numel()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss)
        bar.set_postfix(loss=f"{step_loss:.3f}")
    wall = time.perf_counter() - started
    model.eval()
    hardware = detect_hardware()
    if not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"training loss is not finite ({losses[-5:]}); lower learning_rate in the recipe.")
    return {
        "wall_s": wall, "steps": total_steps, "examples_seen": total_steps * recipe.batch_size * recipe.grad_accum,
        "epochs": total_steps * recipe.batch_size * recipe.grad_accum / len(examples),
        "real_tokens": real_tokens, "padding_fraction": 1 - real_tokens / max(padded_tokens, 1),
        "real_tokens_per_s": real_tokens / wall, "loss_first": losses[0], "loss_last": losses[-1],
        "loss_curve": [round(x, 4) for x in losses],
        "hardware": {"key": hardware.key, "description": hardware.description},
    }


def completion_loss(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """Next-token cross-entropy, with the vocabulary head applied only where a label exists.

    The 49k-entry output layer is a large share of compute and memory; on a completion-only loss most positions
    are prompt, so projecting just the labelled hidden states saves both.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep])


def _batches(examples: list[dict[str, list[int]]], recipe: LoraRecipe) -> Iterator[list[dict[str, list[int]]]]:
    """Endless batches, grouped by length within shuffled windows (little padding, still random order)."""
    window = recipe.batch_size * 16
    for epoch in range(1_000_000):
        rng = random.Random(recipe.seed * 1_000_003 + epoch)
        order = list(range(len(examples)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: -len(examples[i]["input_ids"]))
            batches += [chunk[i : i + recipe.batch_size] for i in range(0, len(chunk), recipe.batch_size)]
        rng.shuffle(batches)
        for batch in batches:
            yield [examples[i] for i in batch]
    raise AssertionError("unreachable")


def _collate(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the batch's longest pair, rounded up to a multiple of 8."""
    width = -(-max(len(e["input_ids"]) for e in batch) // 8) * 8
    ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), IGNORE)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example["input_ids"])
        ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _save(peft_model, recipe: LoraRecipe, info: dict[str, Any], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        peft_model.save_pretrained(staging)
        (staging / "recipe.json").write_text(json.dumps(recipe.to_json(), indent=2))
        (staging / "train_info.json").write_text(json.dumps(info, indent=2))  # written last: marks completeness
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "train_info.json").exists():
            raise
