"""precision='auto': what the device computes natively, detected as torch/oneDNN detect it, capped as they are."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from models import precision
from models.errors import ConfigError
from models.finetune import lora
from models.finetune.recipe import SMOLLM2_CPU, TINY, LoraRecipe
from models.weights import load_tiny_random


@pytest.fixture
def cpu(monkeypatch):
    """A CPU whose features the test sets: amx, avx512_bf16, and the ATen capability."""
    def make(*, amx=False, avx512_bf16=False, capability="AVX512"):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY"):
            monkeypatch.delenv(var, raising=False)
    return make


@pytest.mark.parametrize("features, expected", [
    ({"amx": True}, "bf16"),
    ({"avx512_bf16": True}, "bf16"),
    ({"capability": "AVX512"}, "fp32"),  # AVX512 without BF16/AMX: bf16 would be emulated
    ({"capability": "AVX2"}, "fp32"),
    ({"amx": True, "capability": "AVX2"}, "fp32"),  # ATEN_CPU_CAPABILITY=avx2 caps ATen's kernels
])
def test_auto_on_cpu_is_bf16_only_where_native(cpu, features, expected):
    cpu(**features)
    assert precision.resolve("auto", "cpu").precision == expected


@pytest.mark.parametrize("cap, native", [("AVX2", False), ("avx512_core", False), ("AVX512_CORE_BF16", True),
                                         ("avx512_core_amx", True), ("ALL", True)])
def test_onednn_isa_cap_is_honoured(cpu, monkeypatch, cap, native):
    cpu(amx=True)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert precision.cpu_has_native_bf16() is native
    assert (cap if not native else "") in precision.cpu_description()


def test_emulation_variables_make_torch_report_avx2():
    """The variables the README gives for emulating an AVX2-only CPU really cap torch (checked in a fresh process)."""
    code = ("import json, torch; from models import precision; "
            "print(json.dumps([torch.backends.cpu.get_cpu_capability(), precision.resolve('auto', 'cpu').precision]))")
    env = os.environ | {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == ["AVX2", "fp32"]


@pytest.mark.parametrize("bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_is_bf16_on_ampere_else_fp16(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    assert precision.resolve("auto", "cuda").precision == expected


def test_explicit_precision_is_honoured_and_emulation_named(cpu):
    cpu(capability="AVX2")
    chosen = precision.resolve("bf16", "cpu")
    assert chosen.precision == "bf16" and not chosen.native
    message = precision.emulation_warning(chosen)
    assert "precision=bf16" in message and "AVX2" in message and "--set precision=auto" in message
    assert precision.emulation_warning(precision.resolve("fp32", "cpu")) is None


def test_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match=r"precision must be one of .*'auto'.* got 'bfloat'"):
        precision.resolve("bfloat")


def test_recipes_default_to_auto_and_resolve_to_a_concrete_precision(cpu):
    assert LoraRecipe().precision == SMOLLM2_CPU.precision == TINY.precision == "auto"
    cpu(amx=True)
    assert SMOLLM2_CPU.resolved("cpu").precision == "bf16"
    cpu(capability="AVX2")
    assert SMOLLM2_CPU.resolved("cpu").precision == "fp32"
    assert dataclasses.replace(SMOLLM2_CPU, precision="bf16").resolved("cpu").precision == "bf16"  # explicit stays


def test_the_resolved_precision_is_in_the_adapter_key():
    pairs = [lora.TrainingPair("Q: 1?\nA: ", "1")]
    base = {"base": "tiny-random"}
    keys = {p: lora.adapter_key(base, dataclasses.replace(TINY, precision=p), pairs) for p in ("fp32", "bf16")}
    assert keys["fp32"] != keys["bf16"]


def test_explicit_bf16_without_native_support_warns_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    pairs = [lora.TrainingPair(f"Q: {i}?\nA: ", str(i)) for i in range(8)]
    recipe = dataclasses.replace(TINY, precision="bf16", max_steps=1)
    adapter = lora.finetune(load_tiny_random, {"base": "tiny-random"}, pairs, recipe,
                            options=lora.RunOptions(cache_dir=tmp_path))
    err = capsys.readouterr().err
    assert adapter.recipe.precision == adapter.info["precision"] == "bf16"  # honoured
    assert "warning: precision=bf16 was requested" in err and "Fix: --set precision=auto" in err
    assert err.index("warning: precision=bf16") < err.index("LoRA training (bf16)")
