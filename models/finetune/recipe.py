"""LoRA recipes as data: frozen, documented, hashed into the adapter cache key and saved next to each adapter.

`validate_recipe` checks a recipe against the model's structure and the machine before any weight is loaded,
and lists every problem at once.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from models.precision import PRECISIONS
QUANTIZATIONS = (None, "8bit", "4bit")


@dataclass(frozen=True)
class LoraRecipe:
    """Everything that decides what a LoRA fine-tune produces (and nothing that doesn't, such as paths)."""

    r: int = 16
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.05
    """Dropout on the LoRA branch during training."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    """Module names that get adapters (Llama-family names)."""
    learning_rate: float = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW weight decay on the LoRA weights."""
    warmup_steps: int = 10
    """Linear warmup from 0 to the peak learning rate, then linear decay to 0."""
    epochs: float = 3.0
    """Passes over the training pairs; training stops at whichever of epochs and max_steps comes first."""
    max_steps: int = 100
    """Upper bound on optimizer steps (keeps CPU runs on large train splits to minutes)."""
    batch_size: int = 8
    """Pairs per forward pass (per process under `accelerate launch`)."""
    grad_accum: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x grad_accum x processes)."""
    max_length: int = 384
    """Pairs longer than this many tokens are cut from the right; pairs left without an answer token are dropped."""
    loss_on_prompt: bool = False
    """False: loss on the completion only (usually better). True: the seed's loss over prompt and completion."""
    precision: str = "auto"
    """Compute precision under autocast: 'auto' (what the device computes natively: bf16 on Ampere+ GPUs and CPUs
    with AMX/AVX512-BF16, fp16 on older GPUs, else fp32; see models.precision), or 'fp32', 'bf16', 'fp16' (GPU).
    Adapters, cache keys and records hold the resolved value, never 'auto'."""
    quantization: str | None = None
    """Base weights loaded in '8bit' or '4bit' (bitsandbytes, CUDA only), or None for full precision."""
    eval_every: int = 0
    """Compute the validation loss every N steps (0: only at the end). Needs validation pairs."""
    early_stopping_patience: int = 0
    """Stop after this many validation checks without improvement, keeping the best weights (0: off)."""
    seed: int = 0
    """Seed for LoRA init, dropout and data order."""

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LoraRecipe":
        """A recipe from JSON-like values; every field is checked against its type, all problems listed at once."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        problems = [f"unknown recipe fields {sorted(set(data) - set(defaults))}; known fields: {sorted(defaults)}"
                    ] if set(data) - set(defaults) else []
        values = {}
        for name, value in data.items():
            if name in defaults:
                value, problem = _coerce(name, value, defaults[name])
                values[name] = value
                problems += [problem] if problem else []
        if problems:
            raise ConfigError("invalid LoRA recipe:\n  - " + "\n  - ".join(problems))
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path, base: "LoraRecipe | None" = None) -> "LoraRecipe":
        """A JSON file of recipe fields; fields it leaves out keep `base`'s values."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read recipe {path}: {err}. Expected a JSON object of recipe fields.") from err
        return cls.from_json((base or cls()).to_json() | data)

    def with_overrides(self, assignments: Iterable[str]) -> "LoraRecipe":
        """Apply `key=value` strings (values parsed as JSON, else taken as text), e.g. `r=8`, `precision=bf16`."""
        data = self.to_json()
        for assignment in assignments:
            key, sep, value = assignment.partition("=")
            if not sep:
                raise ConfigError(f"recipe override {assignment!r} is not key=value, e.g. r=8 or learning_rate=3e-4")
            try:
                data[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                data[key.strip()] = value
        return LoraRecipe.from_json(data)

    def resolved(self, device: str = "auto") -> "LoraRecipe":
        """This recipe with precision='auto' replaced by what `device` ('cpu', 'cuda', 'auto') computes natively."""
        from models.precision import resolve

        if self.precision != "auto":  # explicit (or invalid: validate_recipe reports it with the rest)
            return self
        return dataclasses.replace(self, precision=resolve("auto", device).precision)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


def _coerce(name: str, value: Any, default: Any) -> tuple[Any, str | None]:
    """`value` in the type of the field's default (ints may stand for floats), or a problem naming both."""
    if name == "quantization":
        return value, None if value is None or isinstance(value, str) else f"quantization must be null, '8bit' or '4bit', got {value!r}"
    if isinstance(default, tuple):
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return (tuple(value) if ok else value), None if ok else f"{name} must be a list of names, e.g. [\"q_proj\", \"v_proj\"], got {value!r}"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default)) and not isinstance(value, bool)
    return value, None if ok else f"{name} must be {type(default).__name__}, got {value!r}"


def validate_recipe(recipe: LoraRecipe, *, module_names: Iterable[str] | None, cuda: bool) -> None:
    """Raise ConfigError listing every problem of `recipe` for this model and machine (nothing is loaded yet)."""
    problems = [f"{name} must be > 0, got {getattr(recipe, name)!r}"
                for name in ("r", "alpha", "learning_rate", "epochs", "max_steps", "batch_size", "grad_accum",
                             "max_length") if not getattr(recipe, name) > 0]
    if not 0 <= recipe.dropout < 1:
        problems.append(f"dropout must be in [0, 1), got {recipe.dropout}")
    if recipe.precision not in PRECISIONS:
        problems.append(f"precision must be one of {PRECISIONS}, got {recipe.precision!r}")
    if recipe.quantization not in QUANTIZATIONS:
        problems.append(f"quantization must be one of {QUANTIZATIONS}, got {recipe.quantization!r}")
    if recipe.quantization and not cuda:
        problems.append(f"quantization={recipe.quantization!r} needs a CUDA GPU (bitsandbytes); use quantization=null on CPU")
    if recipe.precision == "fp16" and not cuda:
        problems.append("precision='fp16' needs a CUDA GPU; use 'auto' or 'fp32' on CPU")
    if recipe.early_stopping_patience < 0 or recipe.eval_every < 0:
        problems.append("eval_every and early_stopping_patience must be >= 0")
    if recipe.early_stopping_patience and not recipe.eval_every:
        problems.append("early_stopping_patience needs eval_every > 0 (how often to check the validation loss)")
    if not recipe.target_modules:
        problems.append("target_modules is empty; name the linear layers to adapt, e.g. q_proj, v_proj")
    elif module_names is not None:
        leaves = {name.rsplit(".", 1)[-1] for name in module_names}
        missing = [m for m in recipe.target_modules if m not in leaves]
        if missing:
            linear_like = sorted(n for n in leaves if n.endswith(("proj", "fc", "fc1", "fc2", "dense", "c_attn", "c_proj")))
            problems.append(f"target_modules {missing} are not in the model; it has e.g. {linear_like[:12]}")
    if problems:
        raise ConfigError("invalid LoRA recipe:\n  - " + "\n  - ".join(problems))


# The default for the embedded SmolLM2 on CPU: all linear layers, a high learning rate, a step cap; precision auto
# (bf16 autocast on CPUs with AMX/AVX512-BF16, 1.4x their fp32 speed; fp32 elsewhere, where bf16 is emulated and
# ~57x slower for a matmul on an AVX2 EPYC) and no LoRA dropout (peft then keeps no dropped copy of every adapted layer's input: about 1 GB less
# at batch 8).
SMOLLM2_CPU = LoraRecipe(dropout=0.0)

# Mechanics only: tiny-random models train a handful of steps.
TINY = LoraRecipe(r=4, alpha=8, max_steps=4, batch_size=4, warmup_steps=1, max_length=1024)

# The seed's recipe (samlhuillier/spider-sql-finetune): Code Llama 34B in 8-bit, r=8 on the attention projections,
# effective batch 128, 400 steps, loss over the whole text, fp16 (the seed's explicit choice, kept for fidelity).
SEED_CODELLAMA = LoraRecipe(
    r=8, alpha=16, dropout=0.05, target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), learning_rate=3e-4,
    warmup_steps=100, epochs=1000.0, max_steps=400, batch_size=8, grad_accum=16, max_length=512,
    loss_on_prompt=True, precision="fp16", quantization="8bit",
)
