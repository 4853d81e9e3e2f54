"""The LoRA trainer on tiny-random: files, finite loss, cache hits, the loss flag, the labels-only head."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import pytest
import torch

from models.errors import ConfigError
from models.finetune import lora
from models.finetune.recipe import TINY, LoraRecipe
from models.weights import load_tiny_random

PAIRS = [lora.TrainingPair(f"Q: {i} plus {i}?\nA: ", str(2 * i)) for i in range(12)]
BASE = {"base": "tiny-random", "weights": "random-init:seed=0"}


def train(tmp_path, recipe=TINY, pairs=PAIRS):
    return lora.finetune(load_tiny_random, BASE, pairs, recipe, options=lora.RunOptions(cache_dir=tmp_path, progress=False))


def test_trains_writes_files_and_records(tmp_path):
    adapter = train(tmp_path)
    assert not adapter.cached
    names = {p.name for p in adapter.path.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "recipe.json", "train_info.json"} <= names
    assert LoraRecipe.from_json(json.loads((adapter.path / "recipe.json").read_text())) == TINY.resolved()  # never "auto"
    info = adapter.info
    assert info["steps"] == TINY.max_steps and math.isfinite(info["loss_last"])
    assert info["wall_s"] > 0 and info["real_tokens"] > 0 and 0 <= info["padding_fraction"] < 1
    assert info["hardware"]["key"] == "cpu"
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_second_run_reuses_the_adapter(tmp_path):
    first = train(tmp_path)

    def must_not_load(**_):
        raise AssertionError("a verified cache hit must not load weights or train")

    second = lora.finetune(must_not_load, BASE, PAIRS, TINY, options=lora.RunOptions(cache_dir=tmp_path, progress=False))
    assert second.cached and second.path == first.path and second.info == first.info
    on_disk = hashlib.sha256((first.path / lora.WEIGHTS).read_bytes()).hexdigest()
    assert second.weights_sha256 == first.weights_sha256 == first.info["weights_sha256"] == on_disk


@pytest.mark.parametrize("change", [
    lambda r, p: (dataclasses.replace(r, learning_rate=r.learning_rate * 2), p),
    lambda r, p: (r, p[:-1]),
    lambda r, p: (r, p[:-1] + [lora.TrainingPair(p[-1].prompt, p[-1].completion + "0")]),
])
def test_any_change_to_recipe_or_data_changes_the_key(change):
    recipe, pairs = change(TINY, list(PAIRS))
    assert lora.adapter_key(BASE, recipe, pairs) != lora.adapter_key(BASE, TINY, PAIRS)


def test_completion_only_labels_mask_the_prompt():
    _, tokenizer, _ = load_tiny_random()
    (masked,), _ = lora._tokenize(tokenizer, PAIRS[:1], TINY)
    (full,), _ = lora._tokenize(tokenizer, PAIRS[:1], dataclasses.replace(TINY, loss_on_prompt=True))
    prompt_length = len(tokenizer(PAIRS[0].prompt).input_ids)
    assert masked["labels"][:prompt_length] == [lora.IGNORE] * prompt_length
    assert masked["labels"][prompt_length:] == masked["input_ids"][prompt_length:]
    assert full["labels"] == full["input_ids"]
    assert masked["input_ids"][-1] == tokenizer.eos_token_id


def test_labels_only_head_gives_the_standard_loss():
    model, tokenizer, _ = load_tiny_random()
    examples, _ = lora._tokenize(tokenizer, PAIRS[:4], TINY)
    batch = lora._collate(examples, tokenizer.pad_token_id)
    with torch.no_grad():
        ours = lora.completion_loss(model, **batch)
        reference = model(**batch).loss
    assert torch.allclose(ours, reference, atol=1e-5)


def test_empty_training_set_is_refused(tmp_path):
    from models.errors import ConfigError

    with pytest.raises(ConfigError, match="no training pairs"):
        train(tmp_path, pairs=[])


def test_trained_adapter_loads_and_generates(tmp_path):
    from models.base import GenerationConfig, Prompt
    from models.catalog import get

    adapter = train(tmp_path)
    model = get("tiny-random-lora").load(adapter.path, {"adapter": adapter.key})
    out = model.generate([Prompt(text=PAIRS[0].prompt)], GenerationConfig(max_new_tokens=4, stop=()))
    assert len(out) == 1 and model.fingerprint()["adapter"] == adapter.key


@pytest.mark.parametrize("micro", [1, 3, 4])
def test_passes_of_a_batch_add_up_to_the_whole_batchs_gradient(micro):
    """Micro-batching bounds memory without changing the math: token-weighted pass losses sum to the batch loss."""
    model, tokenizer, _ = load_tiny_random()
    examples, _ = lora._tokenize(tokenizer, PAIRS[:7], TINY)  # 7 pairs: the last pass is short

    def gradients(passes):
        model.zero_grad()
        labelled = sum(lora._labelled_tokens(e) for e in examples)
        total = 0.0
        for chunk in passes:
            loss = lora.completion_loss(model, **lora._collate(chunk, tokenizer.pad_token_id), reduction="sum") / labelled
            loss.backward()
            total += loss.item()
        return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    whole_loss, whole = gradients([examples])
    split_loss, split = gradients([examples[i : i + micro] for i in range(0, len(examples), micro)])
    with torch.no_grad():
        reference = lora.completion_loss(model, **lora._collate(examples, tokenizer.pad_token_id))
    assert whole_loss == pytest.approx(reference.item(), rel=1e-5) and split_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == split.keys()
    assert all(torch.allclose(whole[n], split[n], rtol=1e-4, atol=1e-6) for n in whole)


def test_cpu_default_trains_in_passes_without_recomputation(tmp_path):
    checkpointing, micro = lora.memory_plan(lora.RunOptions(), dataclasses.replace(TINY, batch_size=8), cuda=False)
    assert (checkpointing, micro) == (False, 4)
    explicit = lora.RunOptions(gradient_checkpointing=True, micro_batch_size=16)
    assert lora.memory_plan(explicit, dataclasses.replace(TINY, batch_size=8), cuda=False) == (True, 8)
    with pytest.raises(ConfigError, match="micro_batch_size must be >= 1"):
        lora.memory_plan(lora.RunOptions(micro_batch_size=-1), TINY, cuda=False)


def test_validation_loss_uses_at_most_max_validation_pairs(tmp_path):
    validation = [lora.TrainingPair(f"Q: {i}?\nA: ", str(i)) for i in range(lora.MAX_VALIDATION_PAIRS + 40)]
    adapter = lora.finetune(load_tiny_random, BASE, PAIRS, dataclasses.replace(TINY, max_steps=1),
                            validation=validation, options=lora.RunOptions(cache_dir=tmp_path, progress=False))
    assert adapter.info["validation_pairs"] == lora.MAX_VALIDATION_PAIRS and len(adapter.info["validation"]) == 1
