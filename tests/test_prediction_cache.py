"""The prediction cache: hits skip the model, misses go through in one batch, errors and corrupt entries never stick."""

from __future__ import annotations

import json

import pytest

from models.base import Completion, GenerationConfig, Message, Model, Prompt, Usage
from models.precision import CONCRETE
from models.prediction_cache import CachedModel, PredictionCache

ON_DEVICES = [pytest.param("cpu", "fp32", id="cpu-fp32"),
              *(pytest.param("cuda", p, marks=pytest.mark.gpu, id=f"cuda-{p}") for p in CONCRETE)]
"""Where tiny-random answers: the CPU in fp32, and CUDA in each precision (gpu-marked: --run-gpu)."""
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class EchoModel:
    """A real, tiny Model: answers each prompt with its upper-cased text; counts what it was asked."""

    name = "echo"

    def __init__(self, fingerprint=None, fail_on: set[str] = frozenset(), backend_version: str = "echo/1"):
        self._fingerprint = fingerprint or {"base": "echo", "adapter": None}
        self.fail_on, self.backend_version = fail_on, backend_version
        self.calls: list[list[str]] = []

    def fingerprint(self):
        return dict(self._fingerprint)

    def generate(self, prompts, config):
        self.calls.append([p.text for p in prompts])
        return [Completion("", finish_reason="error", error="boom") if p.text in self.fail_on
                else Completion(p.text.upper(), Usage(len(p.text), 1), latency_s=0.25) for p in prompts]


PROMPTS = [Prompt(t, (Message("user", t),)) for t in ["a", "bb", "ccc"]]
CONFIG = GenerationConfig(max_new_tokens=5)


@pytest.fixture
def cache(tmp_path):
    return PredictionCache(tmp_path / "predictions")


def test_is_a_model_and_keeps_identity(cache):
    wrapped = CachedModel(EchoModel(), cache)
    assert isinstance(wrapped, Model)
    assert wrapped.name == "echo" and wrapped.fingerprint() == {"base": "echo", "adapter": None}


def test_rerun_answers_from_cache_with_original_latency_and_usage(cache):
    model = EchoModel()
    first = CachedModel(model, cache).generate(PROMPTS, CONFIG)
    again = CachedModel(model, cache).generate(PROMPTS, CONFIG)
    assert model.calls == [["a", "bb", "ccc"]]
    assert [c.text for c in again] == [c.text for c in first] == ["A", "BB", "CCC"]
    assert all(c.cached for c in again) and not any(c.cached for c in first)
    assert [(c.usage, c.latency_s) for c in again] == [(c.usage, c.latency_s) for c in first]


def test_only_misses_are_sent_in_order(cache):
    model = EchoModel()
    wrapped = CachedModel(model, cache)
    wrapped.generate(PROMPTS[1:2], CONFIG)
    out = wrapped.generate(PROMPTS, CONFIG)
    assert model.calls[-1] == ["a", "ccc"] and wrapped.last_misses == 2
    assert [c.text for c in out] == ["A", "BB", "CCC"] and [c.cached for c in out] == [False, True, False]
    assert wrapped.misses(PROMPTS, CONFIG) == []


def test_misses_are_stored_chunk_by_chunk(cache):
    class Interrupted(EchoModel):
        def generate(self, prompts, config):
            if len(self.calls) == 1:
                raise KeyboardInterrupt
            return super().generate(prompts, config)

    model = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        CachedModel(model, cache, save_every=2).generate(PROMPTS, CONFIG)
    assert model.calls == [["a", "bb"]] and CachedModel(EchoModel(), cache).misses(PROMPTS, CONFIG) == [2]


def test_errors_are_never_cached(cache):
    model = EchoModel(fail_on={"bb"})
    out = CachedModel(model, cache).generate(PROMPTS, CONFIG)
    assert out[1].finish_reason == "error"
    assert CachedModel(model, cache).misses(PROMPTS, CONFIG) == [1]
    healthy = EchoModel()  # same identity, so the same keys: the rerun asks again for the failed item only
    assert [c.text for c in CachedModel(healthy, cache).generate(PROMPTS, CONFIG)] == ["A", "BB", "CCC"]
    assert healthy.calls == [["bb"]]


@pytest.mark.parametrize("change", ["fingerprint", "endpoint", "adapter_weights", "dtype", "device", "prompt_text",
                                    "messages", "params", "backend"])
def test_key_covers_everything_that_decides_an_answer(cache, change):
    identity = {"base": "m", "endpoint": "http://127.0.0.1:1/v1", "adapter_weights": "sha256:aa", "dtype": "float32",
                "device": "cpu"}
    base = EchoModel(identity)
    prompt = Prompt("q", (Message("system", "s"), Message("user", "q")))
    key = cache.key(base, prompt, CONFIG)
    model, other_prompt, config = base, prompt, CONFIG
    if change == "fingerprint":
        model = EchoModel(identity | {"adapter": "x"})
    elif change in ("adapter_weights", "dtype", "device"):
        other = {"adapter_weights": "sha256:bb", "dtype": "bfloat16", "device": "cuda"}[change]
        model = EchoModel(identity | {change: other})
    elif change == "endpoint":
        model = EchoModel(identity | {"endpoint": "http://127.0.0.1:2/v1"})
    elif change == "prompt_text":
        other_prompt = Prompt("q2", prompt.messages)
    elif change == "messages":
        other_prompt = Prompt("q", (Message("system", "t"), Message("user", "q")))
    elif change == "params":
        config = GenerationConfig(max_new_tokens=5, stop=(";",))
    else:
        model = EchoModel(identity, backend_version="echo/2")
    assert cache.key(model, other_prompt, config) != key


def test_backend_may_declare_knobs_that_cannot_change_answers(cache):
    local, api = EchoModel(), EchoModel()
    api.cache_ignores = ("batch_size",)
    small, large = GenerationConfig(batch_size=1), GenerationConfig(batch_size=64)
    assert cache.key(api, PROMPTS[0], small) == cache.key(api, PROMPTS[0], large)
    assert cache.key(local, PROMPTS[0], small) != cache.key(local, PROMPTS[0], large)


@pytest.mark.parametrize("damage", ["truncated", "not json", "wrong key", "wrong types", "empty"])
def test_corrupt_entry_is_a_miss_and_is_rewritten(cache, damage):
    model = EchoModel()
    CachedModel(model, cache).generate(PROMPTS[:1], CONFIG)
    key = cache.key(model, PROMPTS[0], CONFIG)
    path = cache.path(model, key)
    good = path.read_text()
    path.write_text({"truncated": good[: len(good) // 2], "not json": "\x00garbage", "empty": "",
                     "wrong key": good.replace(key, "0" * 64),
                     "wrong types": json.dumps(json.loads(good) | {"usage": "many"})}[damage])
    out = CachedModel(model, cache).generate(PROMPTS[:1], CONFIG)
    assert len(model.calls) == 2 and out[0].text == "A" and not out[0].cached
    assert cache.get(model, key) is not None  # rewritten whole


def test_layout_and_no_temp_files_left(cache):
    model = EchoModel()
    CachedModel(model, cache).generate(PROMPTS, CONFIG)
    files = sorted(p for p in cache.root.rglob("*") if p.is_file())
    assert len(files) == 3 and not [p for p in files if p.name.startswith(".tmp-")]
    for path in files:
        assert path.parent.parent == cache.model_dir(model) and path.parent.name == path.stem[:2]
        assert json.loads(path.read_text())["key"] == path.stem


def test_a_retrained_adapter_with_other_weights_misses(cache, tmp_path):
    """Same training inputs (same adapter key), other weights (another torch, GPU kernels): other answers, so the
    prediction cache must miss. Real tiny-random models with the runner's adapter fingerprint."""
    import hashlib

    import torch
    from peft import LoraConfig, get_peft_model

    from models.catalog import get
    from models.weights import load_tiny_random

    def load(seed):
        base = load_tiny_random()[0]
        torch.manual_seed(seed)  # after the base, which seeds its own init
        folder = tmp_path / f"adapter-{seed}"
        get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"],
                                                         init_lora_weights=False)).save_pretrained(folder)
        weights = hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
        # what benchmarks.runner.prepare_model passes: the key of the training inputs, and the weights' own hash
        fingerprint = {"adapter": "sha256:same-inputs", "adapter_weights": f"sha256:{weights}"}
        return get("tiny-random-lora").load(folder, fingerprint)

    prompts, config = PROMPTS[:2], GenerationConfig(max_new_tokens=3, stop=())
    first, again, retrained = load(1), load(1), load(2)
    assert first.fingerprint()["adapter_weights"] != retrained.fingerprint()["adapter_weights"]
    assert {k: first.fingerprint()[k] for k in ("dtype", "device")} == {"dtype": "float32", "device": "cpu"}
    CachedModel(first, cache).generate(prompts, config)
    assert CachedModel(again, cache).misses(prompts, config) == []  # the same weights: hits
    assert CachedModel(retrained, cache).misses(prompts, config) == [0, 1]


@pytest.mark.parametrize("device, precision", ON_DEVICES)
def test_the_same_weights_on_another_device_or_in_another_precision_miss(cache, tiny_on, device, precision):
    """Greedy answers depend on the arithmetic: what tiny-random answered on one device in one precision is served
    to it there again, never to the same weights on another device or in another precision."""
    prompts, config = PROMPTS[:2], GenerationConfig(max_new_tokens=3, stop=())
    model = tiny_on(device, precision)
    identity = model.fingerprint()
    assert (identity["device"], identity["dtype"]) == (device, DTYPE_NAMES[precision])
    first = CachedModel(model, cache).generate(prompts, config)
    served = CachedModel(model, cache).generate(prompts, config)
    assert all(c.cached for c in served) and [c.text for c in served] == [c.text for c in first]
    other_precision = "bf16" if precision == "fp32" else "fp32"
    elsewhere = [(device, other_precision)] + ([("cpu", precision)] if device == "cuda" else [])
    for other in elsewhere:
        assert CachedModel(tiny_on(*other), cache).misses(prompts, config) == [0, 1], other
