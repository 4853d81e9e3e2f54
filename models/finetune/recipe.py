"""LoRA recipes as data: frozen, documented, hashed into the adapter cache key and saved next to each adapter."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


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
    """Pairs per forward pass."""
    grad_accum: int = 1
    """Forward passes per optimizer step (effective batch = batch_size x grad_accum)."""
    max_length: int = 384
    """Pairs longer than this many tokens are cut from the right (the answer end); the count is reported."""
    loss_on_prompt: bool = False
    """False: loss on the completion only (usually better). True: the seed's loss over prompt and completion."""
    seed: int = 0
    """Seed for LoRA init and data order."""

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LoraRecipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields {unknown}; known fields: {sorted(known)}")
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fields)

    def canonical(self) -> str:
        """Stable text form used in cache keys."""
        return json.dumps(self.to_json(), sort_keys=True)


# The default for the embedded SmolLM2 on CPU: all linear layers, a high learning rate, a step cap.
SMOLLM2_CPU = LoraRecipe()

# Mechanics only: tiny-random models train a handful of steps.
TINY = LoraRecipe(r=4, alpha=8, max_steps=4, batch_size=4, warmup_steps=1, max_length=1024)
