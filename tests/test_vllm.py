"""vLLM backend: without vLLM an error names the extra; GPU runs are opt-in."""

from __future__ import annotations

import importlib.util

import pytest

from models import catalog
from models.base import GenerationConfig, Prompt
from models.errors import MissingDependencyError


def test_vllm_entries_need_a_gpu():
    assert catalog.get("vllm:HuggingFaceTB/SmolLM2-135M-Instruct").requires_gpu
    assert catalog.get("vllm-lora:smollm2-135m").finetuned


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_error_names_the_extra():
    with pytest.raises(MissingDependencyError, match=r"pip install 'ftbench\[vllm\]'"):
        catalog.get("vllm:smollm2-135m").load()


@pytest.mark.gpu
def test_vllm_generates_greedy_completions_in_order():
    model = catalog.get("vllm:smollm2-135m").load()
    prompts = [Prompt(text=f"Question: what is {i} plus {i}?\nAnswer:") for i in range(4)]
    out = model.generate(prompts, GenerationConfig(max_new_tokens=16))
    assert len(out) == 4 and all(c.usage.prompt_tokens > 0 for c in out)
    assert [c.text for c in out] == [c.text for c in model.generate(prompts, GenerationConfig(max_new_tokens=16))]
