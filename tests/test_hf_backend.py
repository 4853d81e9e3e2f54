"""The transformers backend on tiny-random: order, batching, stop strings, usage."""

from __future__ import annotations

import pytest

from models.base import GenerationConfig, Model, Prompt
from models.hf import cut_at_stop

PROMPTS = [Prompt(text=t) for t in ["a", "hello world, this is longer", "SELECT", "x" * 40, "mid length", "q"]]


def test_is_a_model(tiny):
    assert isinstance(tiny, Model)
    assert tiny.fingerprint()["base"] == "tiny-random"


def test_batched_output_equals_batch_of_one(tiny):
    config = GenerationConfig(max_new_tokens=12, stop=())
    batched = tiny.generate(PROMPTS, config)
    single = [tiny.generate([p], GenerationConfig(max_new_tokens=12, stop=(), batch_size=1))[0] for p in PROMPTS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.usage for c in batched] == [c.usage for c in single]


def test_one_completion_per_prompt_in_order(tiny):
    config = GenerationConfig(max_new_tokens=6, stop=(), batch_size=4)
    out = tiny.generate(PROMPTS, config)
    assert len(out) == len(PROMPTS)
    again = tiny.generate(list(reversed(PROMPTS)), config)
    assert [c.text for c in again] == [c.text for c in reversed(out)]


def test_usage_and_latency_are_measured(tiny):
    out = tiny.generate(PROMPTS[:2], GenerationConfig(max_new_tokens=5, stop=()))
    for prompt, completion in zip(PROMPTS[:2], out):
        assert completion.usage.prompt_tokens == len(tiny.tokenizer(prompt.text).input_ids)
        assert 0 < completion.usage.completion_tokens <= 5
        assert completion.latency_s > 0


def test_stop_string_cuts_each_sequence(tiny):
    free = tiny.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=20, stop=()))
    # Stops taken from two of the free-running outputs: those two end early, the third runs to the limit.
    stops = (free[0].text[2:4], free[2].text[5:7])
    cut = tiny.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=20, stop=stops))
    for full, short in zip(free, cut):
        expected, stopped = cut_at_stop(full.text, stops)
        assert short.text == expected
        assert short.finish_reason == ("stop" if stopped else "length")
    assert [c.finish_reason for c in cut].count("stop") >= 2


def test_unknown_model_name_lists_choices_and_closest():
    from models import catalog
    from models.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"Did you mean 'smollm2-135m'\?.*tiny-random"):
        catalog.get("smollm2-135")


def test_fingerprint_names_dtype_and_device(tiny):
    """Greedy answers depend on the arithmetic: the prediction cache keeps fp32/bf16 and CPU/CUDA answers apart."""
    assert tiny.fingerprint()["dtype"] == "float32" and tiny.fingerprint()["device"] == "cpu"


# --- LoRA adapters: merged into full-precision bases, kept beside quantized ones ----------------------------------

def random_adapter(folder):
    """A LoRA adapter with random (non-zero) A and B on every projection, so it visibly changes the answers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from models.weights import load_tiny_random

    base = load_tiny_random()[0]
    torch.manual_seed(1)  # after the base, which seeds its own init
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                            "up_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(folder)
    return folder


def tiny_with_adapter(adapter, merge):
    from models.hf import HFModel
    from models.weights import load_tiny_random

    model, tokenizer, fingerprint = load_tiny_random()
    return HFModel.with_adapter("tiny-random-lora", model, tokenizer, fingerprint, adapter, merge=merge)


def test_merged_and_unmerged_adapter_give_the_same_tokens(tiny, tmp_path):
    """Merging (full-precision bases) is an optimization only: greedy tokens equal the unmerged adapter's."""
    from peft import PeftModel

    adapter = random_adapter(tmp_path / "adapter")
    merged, unmerged = tiny_with_adapter(adapter, merge=True), tiny_with_adapter(adapter, merge=False)
    assert isinstance(unmerged.model, PeftModel) and not isinstance(merged.model, PeftModel)
    config = GenerationConfig(max_new_tokens=16, stop=(), batch_size=4)
    outputs = {name: [(c.text, c.usage, c.finish_reason) for c in model.generate(PROMPTS, config)]
               for name, model in [("base", tiny), ("merged", merged), ("unmerged", unmerged)]}
    assert outputs["merged"] == outputs["unmerged"]
    assert outputs["merged"] != outputs["base"]  # the adapter matters, so the comparison means something


def test_only_full_precision_bases_merge():
    from models.hf import should_merge

    assert should_merge(None)
    assert not should_merge("8bit") and not should_merge("4bit")


def test_a_quantized_recipe_keeps_its_adapter_unmerged(tmp_path):
    """The catalog's wiring, on CPU: tiny-random ignores the quantization (bitsandbytes needs CUDA; see the gpu test
    below), but the entry still asks for an unmerged adapter because its recipe says 8-bit."""
    import dataclasses

    from peft import PeftModel

    from models.catalog import CatalogEntry
    from models.finetune.recipe import TINY

    adapter = random_adapter(tmp_path / "adapter")
    full = CatalogEntry("full", "tiny-random", TINY).load(adapter, {"adapter": "a"})
    eight_bit_entry = CatalogEntry("8bit", "tiny-random", dataclasses.replace(TINY, quantization="8bit"))
    eight_bit = eight_bit_entry.load(adapter, {"adapter": "a"})
    assert isinstance(eight_bit.model, PeftModel) and not isinstance(full.model, PeftModel)


@pytest.mark.gpu
def test_adapter_on_an_8bit_base_stays_unmerged_and_generates(tmp_path):
    """The real quantized path: tiny-random saved, loaded in 8-bit through bitsandbytes, the adapter beside it."""
    import dataclasses

    from peft import PeftModel

    from models.catalog import CatalogEntry
    from models.finetune.recipe import TINY
    from models.weights import load_tiny_random

    model, tokenizer, _ = load_tiny_random()
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    adapter = random_adapter(tmp_path / "adapter")
    entry = CatalogEntry("8bit", str(tmp_path / "base"), dataclasses.replace(TINY, quantization="8bit"))
    tuned = entry.load(adapter, {"adapter": "a"})
    assert isinstance(tuned.model, PeftModel)
    assert any("8bit" in type(m).__name__.lower() for m in tuned.model.modules())  # bnb Linear8bitLt, not merged
    assert tuned.fingerprint()["quantization"] == "8bit" and tuned.fingerprint()["device"] == "cuda"
    out = tuned.generate(PROMPTS[:3], GenerationConfig(max_new_tokens=8, stop=()))
    assert len(out) == 3 and all(c.usage.completion_tokens > 0 for c in out)


def test_machine_time_is_each_batchs_wall_time_shared_by_its_items(tiny):
    """What a local eval bills: the shares add up to the time the batches took, never more than the call."""
    import time

    prompts = [Prompt(f"item {i} " * (i + 1)) for i in range(5)]
    started = time.perf_counter()
    completions = tiny.generate(prompts, GenerationConfig(max_new_tokens=6, stop=(), batch_size=2))
    wall = time.perf_counter() - started
    shares = sorted(c.machine_s for c in completions)
    assert all(s > 0 for s in shares) and sum(shares) <= wall
    assert len(set(shares)) <= 3  # batches of 2, 2 and 1: one share per batch
