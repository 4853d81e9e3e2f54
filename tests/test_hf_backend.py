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
