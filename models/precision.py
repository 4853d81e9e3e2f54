"""Which floating-point precision this device computes natively: the one rule for every dtype choice.

`precision="auto"` (the default of every local recipe) resolves here: bf16 on a CUDA GPU that supports it and on a
CPU with AMX or AVX512-BF16; fp16 on older GPUs; else fp32. On a CPU without native bf16 (AVX2-only x86, e.g. many
AMD EPYCs), bf16 autocast is emulated: a 512x576 @ 576x1536 matmul runs 57x slower than in fp32 on an AVX2 EPYC
(see the README), so `auto` must never pick it there.

The CPU check follows torch and oneDNN: the instruction sets cpuinfo reports, capped by the same environment
variables that cap them (`ONEDNN_MAX_CPU_ISA` / `DNNL_MAX_CPU_ISA` for oneDNN's kernels, `ATEN_CPU_CAPABILITY` for
ATen's vectorized ones). So `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2` makes an AMX machine resolve to fp32,
exactly as it makes torch compute like an AVX2-only CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
CONCRETE = ("fp32", "bf16", "fp16")

# oneDNN ISA names (its `dnnl_cpu_isa_t`, as ONEDNN_MAX_CPU_ISA spells them) at or above which bf16 dot products
# run natively; everything below emulates them. ALL / DEFAULT mean no cap.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
                     "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "ALL", "DEFAULT")


@dataclass(frozen=True)
class Resolved:
    """A concrete precision and why it was chosen, for records, report headers and warnings."""

    precision: str
    """'fp32', 'bf16' or 'fp16'."""
    requested: str
    reason: str

    @property
    def native(self) -> bool:
        """False when the device would emulate this precision (an explicit bf16 on an AVX2-only CPU)."""
        return not self.reason.startswith("emulated")


def resolve(requested: str = "auto", device: str = "cpu") -> Resolved:
    """The precision to compute in on `device` ('cpu' or 'cuda'): `requested` unless it is 'auto'.

    >>> resolve("fp32").precision
    'fp32'
    """
    if requested not in PRECISIONS:
        from models.errors import ConfigError

        raise ConfigError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    native, why = native_precision(device)
    if requested == "auto":
        return Resolved(native, requested, f"auto: {why}")
    if requested == "bf16" and native != "bf16":
        return Resolved(requested, requested, f"emulated: {why}")
    return Resolved(requested, requested, f"requested ({why})")


def native_precision(device: str = "cpu") -> tuple[str, str]:
    """(the fastest precision this device computes natively, a short reason naming what was detected)."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", f"{name} computes bf16"
        return "fp16", f"{name} has no bf16 (pre-Ampere): fp16"
    return ("bf16", cpu_description()) if cpu_has_native_bf16() else ("fp32", cpu_description())


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 on this CPU, and neither oneDNN nor ATen capped below it by the environment."""
    import torch

    hardware = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    onednn_cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    aten_capped = torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX512_BF16", "AMX")
    return hardware and onednn_cap in _ONEDNN_BF16_ISAS and not aten_capped


def cpu_description() -> str:
    """What the precision rule saw on the CPU, e.g. 'CPU: AVX2, no AMX/AVX512-BF16'."""
    import torch

    features = [name for name, present in (("AMX", torch.cpu._is_amx_tile_supported()),
                                           ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported())) if present]
    capability = torch.backends.cpu.get_cpu_capability()
    caps = [f"{var}={os.environ[var]}" for var in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
            if os.environ.get(var)]
    native = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return (f"CPU: {capability}, {'+'.join(features) or 'no AMX/AVX512-BF16'}"
            f"{' (capped by ' + ', '.join(caps) + ')' if caps else ''}: {native}")


def torch_dtype(precision: str):
    """The torch dtype of a concrete precision."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def emulation_warning(resolved: Resolved) -> str | None:
    """The message for an explicit precision the device would emulate (None when it is native)."""
    if resolved.native:
        return None
    return (f"precision={resolved.precision} was requested but this device has no native {resolved.precision} "
            f"({resolved.reason.removeprefix('emulated: ')}); it will be emulated, tens of times slower than fp32 for "
            f"a matmul. Fix: --set precision=auto (or fp32), or \"precision\": \"auto\" in your --recipe file.")
