"""Fine-tuning that survives: resume equals a clean run (on the CPU, and with --run-gpu on CUDA in fp32, bf16 and
fp16), damaged cache entries are rebuilt, bad recipes refused."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from models.errors import ConfigError
from models.finetune import lora
from models.finetune.recipe import TINY, LoraRecipe, validate_recipe
from models.precision import CONCRETE
from models.weights import load_tiny_random

PAIRS = [lora.TrainingPair(f"Q: {i} plus {i}?\nA: ", str(2 * i)) for i in range(24)]
VALIDATION = [lora.TrainingPair(f"Q: {i} plus {i}?\nA: ", str(2 * i)) for i in range(30, 36)]
BASE = {"base": "tiny-random", "weights": "random-init:seed=0"}
RECIPE = dataclasses.replace(TINY, max_steps=9, batch_size=4, dropout=0.1)
ON_CUDA = [pytest.param(precision, marks=pytest.mark.gpu, id=f"cuda-{precision}") for precision in CONCRETE]
"""The recipe's precision on a GPU (gpu-marked: --run-gpu); 'auto' is this machine's own choice, as always."""


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def reproducible_training(monkeypatch):
    """The tests here compare trainings bit for bit. On CUDA that needs torch's deterministic algorithms: by default
    attention's backward adds its partial sums in an order that may change from run to run. A CPU needs nothing."""
    if not torch.cuda.is_available():
        yield
        return
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic mode refuses cuBLAS without it
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)  # strict: an op with no deterministic kernel fails, naming itself
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def interrupt_at(step_to_fail: int):
    def hook(step: int) -> None:
        if step == step_to_fail:
            raise Interrupted(step)
    return hook


def train(cache, recipe=RECIPE, validation=(), **options):
    return lora.finetune(load_tiny_random, BASE, PAIRS, recipe, validation=validation,
                         options=lora.RunOptions(cache_dir=cache, progress=False, **options))


def weights(adapter):
    return load_file(str(adapter.path / "adapter_model.safetensors"))


@pytest.mark.parametrize("precision", [pytest.param("auto", id="auto"), *ON_CUDA])
def test_resumed_run_ends_with_the_clean_runs_adapter(tmp_path, precision):
    recipe = dataclasses.replace(RECIPE, precision=precision)
    clean = train(tmp_path / "clean", recipe, checkpoint_every=3)
    if precision != "auto":  # the CUDA variants: trained on the GPU, in that precision
        assert clean.info["hardware"]["key"] != "cpu" and clean.info["precision"] == precision, clean.info
    with pytest.raises(Interrupted):
        train(tmp_path / "resumed", recipe, checkpoint_every=3, on_step=interrupt_at(7))  # after the checkpoint at 6
    published = [p for p in (tmp_path / "resumed").iterdir() if not p.name.startswith(".")]
    assert published == [], "an interrupted run must not publish an adapter"
    resumed = train(tmp_path / "resumed", recipe, checkpoint_every=3)
    assert resumed.info["resumed_from"] == [6]
    assert resumed.info["loss_curve"] == clean.info["loss_curve"]
    first, second = weights(clean), weights(resumed)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not list((tmp_path / "resumed").glob(".partial-*")), "checkpoints are removed once the adapter is published"


@pytest.mark.parametrize("damage", ["delete_weights", "truncate_weights", "garble_info"])
def test_a_damaged_cache_entry_is_rebuilt(tmp_path, capsys, damage):
    adapter = train(tmp_path)
    if damage == "delete_weights":
        (adapter.path / "adapter_model.safetensors").unlink()
    elif damage == "truncate_weights":
        path = adapter.path / "adapter_model.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    else:
        (adapter.path / "train_info.json").write_text("{not json")
    rebuilt = train(tmp_path)
    assert not rebuilt.cached and "unusable" in capsys.readouterr().err
    assert all(torch.equal(weights(rebuilt)[k], v) for k, v in weights(train(tmp_path)).items())


def sha256_of(adapter) -> str:
    return hashlib.sha256((adapter.path / lora.WEIGHTS).read_bytes()).hexdigest()


def test_scrambled_tensor_bytes_with_an_intact_header_are_caught_and_rebuilt(tmp_path, capsys):
    adapter = train(tmp_path)
    assert adapter.weights_sha256 == sha256_of(adapter) == adapter.info["weights_sha256"]
    path = adapter.path / lora.WEIGHTS
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")  # safetensors: u64 header length, JSON header, then tensor bytes
    data[start : start + 256] = bytes(b ^ 0x5A for b in data[start : start + 256])
    path.write_bytes(bytes(data))
    assert weights(adapter).keys(), "the header is intact: the file still loads, only its tensors changed"

    rebuilt = train(tmp_path)
    err = capsys.readouterr().err
    assert not rebuilt.cached, "scrambled weights must be retrained, not used"
    assert "adapter_model.safetensors fails its checksum" in err and "rebuilding it" in err
    assert rebuilt.weights_sha256 == sha256_of(rebuilt) == adapter.weights_sha256  # training is deterministic

    again = train(tmp_path)
    assert again.cached and again.weights_sha256 == rebuilt.weights_sha256 and capsys.readouterr().err == ""


def test_an_entry_saved_without_a_checksum_is_rebuilt(tmp_path, capsys):
    adapter = train(tmp_path)
    info_path = adapter.path / "train_info.json"
    info = json.loads(info_path.read_text())
    del info["weights_sha256"]
    info_path.write_text(json.dumps(info))
    rebuilt = train(tmp_path)
    assert not rebuilt.cached and "has no weights_sha256" in capsys.readouterr().err
    assert rebuilt.weights_sha256 == sha256_of(rebuilt)


def test_validation_loss_is_recorded_and_early_stopping_keeps_the_best(tmp_path):
    recipe = dataclasses.replace(RECIPE, max_steps=12, eval_every=2, early_stopping_patience=1, learning_rate=0.5)
    adapter = train(tmp_path, recipe, validation=VALIDATION)
    history = adapter.info["validation"]
    assert history and all(h["loss"] > 0 for h in history)
    best = min(history, key=lambda h: h["loss"])
    assert adapter.info["best_step"] == best["step"]
    if adapter.info["stopped_early"]:
        assert adapter.info["steps"] < 12


def test_every_recipe_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as error:  # values: refused when the recipe is built
        LoraRecipe(r=0, dropout=1.5, early_stopping_patience=-1)
    for expected in ["r = 0: must be an integer >= 1", "dropout = 1.5: must be a number in [0, 1)",
                     "early_stopping_patience = -1: must be an integer >= 0"]:
        assert expected in str(error.value)
    bad = LoraRecipe(quantization="8bit", precision="fp16", target_modules=("q_proj", "wq"), early_stopping_patience=2)
    with pytest.raises(ConfigError) as error:  # the model, the machine and combinations: before loading weights
        validate_recipe(bad, module_names=["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"], cuda=False)
    message = str(error.value)
    for expected in ["quantization='8bit' needs a CUDA GPU", "precision='fp16' needs a CUDA GPU",
                     "target_modules ['wq'] are not in the model", "early_stopping_patience needs eval_every"]:
        assert expected in message


def test_an_invalid_recipe_fails_before_loading_weights(tmp_path):
    def must_not_load(**_):
        raise AssertionError("weights were loaded")

    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        lora.finetune(must_not_load, BASE, PAIRS, dataclasses.replace(TINY, quantization="4bit"),
                      options=lora.RunOptions(cache_dir=tmp_path, progress=False))


def test_recipe_overrides_and_round_trip(tmp_path):
    recipe = TINY.with_overrides(["r=8", "precision=bf16", "target_modules=[\"q_proj\"]"])
    assert (recipe.r, recipe.precision, recipe.target_modules) == (8, "bf16", ("q_proj",))
    path = tmp_path / "recipe.json"
    path.write_text('{"learning_rate": 3e-4}')
    assert LoraRecipe.from_file(path, recipe) == dataclasses.replace(recipe, learning_rate=3e-4)
    with pytest.raises(ConfigError, match="unknown recipe fields \\['rank'\\]"):
        TINY.with_overrides(["rank=8"])


def test_bf16_autocast_trains(tmp_path):
    adapter = train(tmp_path, dataclasses.replace(RECIPE, precision="bf16", max_steps=2))
    assert adapter.info["precision"] == "bf16" and torch.isfinite(torch.tensor(adapter.info["loss_last"]))


def test_recipe_values_are_type_checked_with_every_problem_listed():
    with pytest.raises(ConfigError) as error:
        TINY.with_overrides(["target_modules=q_proj", "r=eight", "loss_on_prompt=\"yes\"", "seed=1.5"])
    for expected in ["target_modules = 'q_proj': must be a non-empty list of module names", "r = 'eight': must be an integer",
                     "loss_on_prompt = 'yes': must be true or false", "seed = 1.5: must be an integer"]:
        assert expected in str(error.value)
    assert TINY.with_overrides(["learning_rate=1"]).learning_rate == 1.0
