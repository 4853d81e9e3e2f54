"""LoRA recipes as data: frozen, documented, hashed into the adapter cache key and saved next to each adapter.

Values are checked in one place, `_check_values` (type, range, finiteness per field), run whenever a recipe is
built (code, JSON, `--set`, `dataclasses.replace`), so no invalid value reaches training or a cache key; every
invalid field is listed with its value and what it must be. `validate_recipe` adds what depends on the model and
the machine (target modules, CUDA-only options) before any weight is loaded, again listing every problem at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import ConfigError
from models.precision import PRECISIONS

QUANTIZATIONS = (None, "8bit", "4bit")
EXAMPLE = '{"r": 8}'


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

    def __post_init__(self) -> None:
        # Every construction passes here (dataclasses.replace too). Ints given for float fields become floats, so
        # LoraRecipe(learning_rate=1) and one read from {"learning_rate": 1.0} hash to the same adapter key.
        values, problems = _check_values({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if problems:
            raise ConfigError(_listing("invalid LoRA recipe", problems))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: Any, source: str | None = None) -> "LoraRecipe":
        """A recipe from JSON-like values; unknown fields and invalid values all listed at once (with `source`,
        e.g. the file they came from)."""
        _require_object(data, source or "the recipe")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        problems = [f"unknown recipe fields {unknown}; known fields: {sorted(known)}"] if unknown else []
        values, invalid = _check_values({name: value for name, value in data.items() if name in known})
        if problems or invalid:
            raise ConfigError(_listing(f"invalid LoRA recipe{f' in {source}' if source else ''}", problems + invalid))
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path, base: "LoraRecipe | None" = None) -> "LoraRecipe":
        """A JSON file of recipe fields; fields it leaves out keep `base`'s values."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"cannot read recipe {path}: {err}. Expected a JSON object of recipe fields such as "
                              f"{EXAMPLE}.") from err
        _require_object(data, str(path))  # before merging: a list cannot be merged into the base's fields
        return cls.from_json((base or cls()).to_json() | data, source=str(path))

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

        if self.precision != "auto":
            return self
        return dataclasses.replace(self, precision=resolve("auto", device).precision)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accum


# One rule per field: value -> (the value as stored, None) or (value, what it must be). Ints stand for floats;
# bools are not numbers (JSON true is not 1); NaN and infinities are refused everywhere (inf passes `x > 0`, and a
# NaN or infinite learning rate, dropout or epoch count trains garbage or never ends).
Rule = Callable[[Any], tuple]


def _integer(low: int, high: int | None = None) -> Rule:
    wanted = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def rule(value: Any) -> tuple[Any, str | None]:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value and (high is None or value <= high)
        return value, None if ok else wanted
    return rule


def _number(wanted: str, within: Callable[[float], bool]) -> Rule:
    def rule(value: Any) -> tuple[Any, str | None]:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and within(value))
        return (float(value), None) if ok else (value, wanted)
    return rule


def _choice(choices: tuple) -> Rule:
    wanted = "one of " + ", ".join("null" if c is None else c for c in choices)
    return lambda value: (value, None if isinstance(value, (str, type(None))) and value in choices else wanted)


def _boolean(value: Any) -> tuple[Any, str | None]:
    return value, None if isinstance(value, bool) else "true or false"


def _names(value: Any) -> tuple[Any, str | None]:
    ok = isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v for v in value)
    return (tuple(value), None) if ok else (value, 'a non-empty list of module names, e.g. ["q_proj", "v_proj"]')


RULES: dict[str, Rule] = {
    "r": _integer(1), "alpha": _integer(1), "dropout": _number("a number in [0, 1)", lambda x: 0 <= x < 1),
    "target_modules": _names, "learning_rate": _number("a finite number > 0", lambda x: x > 0),
    "weight_decay": _number("a finite number >= 0", lambda x: x >= 0), "warmup_steps": _integer(0),
    "epochs": _number("a finite number > 0", lambda x: x > 0), "max_steps": _integer(1), "batch_size": _integer(1),
    "grad_accum": _integer(1), "max_length": _integer(1), "loss_on_prompt": _boolean,
    "precision": _choice(PRECISIONS), "quantization": _choice(QUANTIZATIONS), "eval_every": _integer(0),
    "early_stopping_patience": _integer(0), "seed": _integer(0, 2**32 - 1),  # the range every seeding API (numpy's too) accepts
}


def _check_values(values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(values as stored, one problem per invalid field: `name = value: must be ...`)."""
    checked, problems = {}, []
    for name, value in values.items():
        checked[name], wanted = RULES[name](value)
        if wanted:
            problems.append(f"{name} = {value!r}: must be {wanted}")
    return checked, problems


def _require_object(data: Any, where: str) -> None:
    """A recipe is a JSON object; say what else `where` holds instead of failing with a TypeError."""
    if isinstance(data, dict):
        return
    kinds = {list: "a JSON list", str: "a JSON string", bool: "a JSON boolean", type(None): "JSON null"}
    kind = kinds.get(type(data), "a JSON number" if isinstance(data, (int, float)) else type(data).__name__)
    raise ConfigError(f"{where} holds {kind}; expected an object of recipe fields such as {EXAMPLE}")


def _listing(title: str, problems: list[str]) -> str:
    return f"{title}:\n  - " + "\n  - ".join(problems)


def validate_recipe(recipe: LoraRecipe, *, module_names: Iterable[str] | None, cuda: bool) -> None:
    """Raise ConfigError listing every problem of `recipe` for this model and machine (nothing is loaded yet).

    Values were checked when the recipe was built; what is left depends on the model, the machine, or two fields."""
    problems = []
    if recipe.quantization and not cuda:
        problems.append(f"quantization={recipe.quantization!r} needs a CUDA GPU (bitsandbytes); use quantization=null on CPU")
    if recipe.precision == "fp16" and not cuda:
        problems.append("precision='fp16' needs a CUDA GPU; use 'auto' or 'fp32' on CPU")
    if recipe.early_stopping_patience and not recipe.eval_every:
        problems.append("early_stopping_patience needs eval_every > 0 (how often to check the validation loss)")
    if module_names is not None:
        leaves = {name.rsplit(".", 1)[-1] for name in module_names}
        missing = [m for m in recipe.target_modules if m not in leaves]
        if missing:
            linear_like = sorted(n for n in leaves if n.endswith(("proj", "fc", "fc1", "fc2", "dense", "c_attn", "c_proj")))
            problems.append(f"target_modules {missing} are not in the model; it has e.g. {linear_like[:12]}")
    if problems:
        raise ConfigError(_listing("invalid LoRA recipe", problems))


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
