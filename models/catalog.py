"""Short model names -> backend, base weights and (for fine-tuned entries) a recipe.

Heavy imports (torch, transformers, peft) happen only when an entry is loaded, so listing the catalog, resolving
options or printing errors stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import UnknownNameError
from models.finetune.recipe import SMOLLM2_CPU, TINY, LoraRecipe


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    weights: str
    """'tiny-random', 'smollm2-135m' (embedded default), or a hub id / local folder of a causal LM."""
    recipe: LoraRecipe | None = None
    """Set for entries that are LoRA-fine-tuned on the task's train split before evaluation."""
    description: str = ""

    @property
    def finetuned(self) -> bool:
        return self.recipe is not None

    def base_fingerprint(self) -> dict[str, Any]:
        """Identity of the base weights, without loading them when avoidable."""
        if self.weights == "smollm2-135m":
            from models.weights import smollm2_folder

            return smollm2_folder()[1]
        if self.weights == "tiny-random":
            return {"base": "tiny-random", "weights": "random-init:seed=0"}
        return {"base": self.weights, "weights": "hub-or-path"}

    def load_base(self):
        """(model, tokenizer, fingerprint) of the base weights."""
        from models import weights

        if self.weights == "tiny-random":
            return weights.load_tiny_random()
        if self.weights == "smollm2-135m":
            return weights.load_smollm2()
        return weights.load_pretrained(self.weights)

    def load(self, adapter: Path | None = None, adapter_fingerprint: dict[str, Any] | None = None):
        """The runnable Model; with a LoRA adapter folder for fine-tuned entries."""
        from models.hf import HFModel

        model, tokenizer, fingerprint = self.load_base()
        if adapter is None:
            return HFModel(self.name, model, tokenizer, fingerprint | {"adapter": None})
        fingerprint = fingerprint | {"adapter": None} | (adapter_fingerprint or {"adapter": str(adapter)})
        return HFModel.with_adapter(self.name, model, tokenizer, fingerprint, adapter)


CATALOG: dict[str, CatalogEntry] = {
    entry.name: entry
    for entry in [
        CatalogEntry("tiny-random", "tiny-random", description="2-layer random Llama, byte tokenizer: mechanics only"),
        CatalogEntry("tiny-random-lora", "tiny-random", TINY, description="tiny-random + a few LoRA steps: mechanics"),
        CatalogEntry("smollm2-135m", "smollm2-135m", description="SmolLM2-135M-Instruct, embedded default (offline GGUF)"),
        CatalogEntry("smollm2-135m-lora", "smollm2-135m", SMOLLM2_CPU,
                     description="SmolLM2-135M-Instruct + LoRA on the task's train split (CPU recipe)"),
    ]
}


def get(name: str) -> CatalogEntry:
    """A catalog entry by name; an unknown name fails with the known names and the closest match."""
    if name not in CATALOG:
        raise UnknownNameError("model", name, CATALOG)
    return CATALOG[name]
