"""Short model names -> backend, base weights and (for fine-tuned entries) a recipe.

Two kinds of entry: `CatalogEntry` (transformers weights, optionally LoRA-fine-tuned here) and `OpenAIEntry` (chat
completions over HTTP, optionally fine-tuned by an OpenAI job). Both say `backend`, `finetuned` and `price_family`.
Heavy imports (torch, transformers, peft, openai) happen only when an entry is loaded, so listing the catalog,
resolving options or printing errors stays instant.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from models.errors import ConfigError, UnknownNameError
from models.finetune.recipe import SEED_CODELLAMA, SMOLLM2_CPU, TINY, LoraRecipe

OPENAI_BASE_URL = "https://api.openai.com/v1"  # same as models.openai_api.OPENAI_BASE_URL, without importing it
SEED_EPOCHS = {"spider": 3, "viggo": 2}  # the seed's GPT-3.5 jobs: SQL with the default 3 epochs, ViGGO n_epochs=2


@dataclass(frozen=True)
class CatalogEntry:
    backend: ClassVar[str] = "hf"
    price_family: ClassVar[str | None] = None
    """Local models are priced by wall time x the hardware's hourly rate, not by tokens."""

    name: str
    weights: str
    """'tiny-random', 'smollm2-135m' (embedded default), or a hub id / local folder of a causal LM."""
    recipe: LoraRecipe | None = None
    """Set for entries that are LoRA-fine-tuned on the task's train split before evaluation."""
    description: str = ""
    runtime: str = "hf"
    """What generates: 'hf' (transformers, CPU or GPU) or 'vllm' (GPU; LoRA adapters through vLLM's LoRA support)."""

    @property
    def finetuned(self) -> bool:
        return self.recipe is not None

    @property
    def requires_gpu(self) -> bool:
        """vLLM, 8-bit/4-bit loading (bitsandbytes) and fp16 training run only on CUDA."""
        tuned_on_gpu = self.recipe is not None and (self.recipe.quantization is not None or self.recipe.precision == "fp16")
        return self.runtime == "vllm" or tuned_on_gpu

    def base_fingerprint(self) -> dict[str, Any]:
        """Identity of the base weights, without loading them when avoidable. A hub id is keyed by its resolved
        commit (fetching its config when online and not cached), never by whether its weights are downloaded yet,
        so an adapter's cache key is the same on the first run and every later one."""
        if self.weights == "smollm2-135m":
            from models.weights import smollm2_folder

            return smollm2_folder()[1]
        if self.weights == "tiny-random":
            return {"base": "tiny-random", "weights": "random-init:seed=0"}
        from models.weights import pretrained_fingerprint

        return pretrained_fingerprint(self.weights)

    def module_names(self) -> list[str] | None:
        """Module names of the architecture, built on the meta device (no weights), to check a recipe's targets;
        None when the config cannot be read offline."""
        from models import weights

        return weights.module_names(self.weights)

    def load_base(self, quantization: str | None = None):
        """(model, tokenizer, fingerprint) of the base weights, optionally quantized (CUDA only)."""
        from models import weights

        if self.weights == "tiny-random":
            return weights.load_tiny_random()
        if self.weights == "smollm2-135m" and quantization is None:
            return weights.load_smollm2()
        name = weights.smollm2_folder()[0] if self.weights == "smollm2-135m" else self.weights
        return weights.load_pretrained(str(name), quantization=quantization)

    def load(self, adapter: Path | None = None, adapter_fingerprint: dict[str, Any] | None = None):
        """The runnable Model; with a LoRA adapter folder for fine-tuned entries."""
        if self.runtime == "vllm":
            return self._load_vllm(adapter, adapter_fingerprint)
        from models.hf import HFModel, should_merge

        quantization = self.recipe.quantization if self.recipe else None
        model, tokenizer, fingerprint = self.load_base(quantization)
        if adapter is None:
            return HFModel(self.name, model, tokenizer, fingerprint | {"adapter": None})
        fingerprint = fingerprint | {"adapter": None} | (adapter_fingerprint or {"adapter": str(adapter)})
        return HFModel.with_adapter(self.name, model, tokenizer, fingerprint, adapter, merge=should_merge(quantization))


    def _load_vllm(self, adapter: Path | None, adapter_fingerprint: dict[str, Any] | None):
        """vLLM serves the base weights and applies the adapter per request; $FTBENCH_VLLM_TP GPUs in parallel."""
        from models.vllm_backend import VLLMModel
        from models.weights import smollm2_folder

        weights = smollm2_folder()[0] if self.weights == "smollm2-135m" else self.weights
        fingerprint = self.base_fingerprint() | {"adapter": None}
        if adapter is not None:
            fingerprint |= adapter_fingerprint or {"adapter": str(adapter)}
        return VLLMModel(self.name, weights, fingerprint, adapter=adapter,
                         tensor_parallel_size=int(os.environ.get("FTBENCH_VLLM_TP", "1")))


@dataclass(frozen=True)
class OpenAIFineTune:
    """How an OpenAI entry is fine-tuned: base snapshot, epochs and limits. Saved with every job's state."""

    base: str
    """Default base snapshot (OpenAI retires snapshots: override with the `base_env` variable)."""
    base_env: str
    """Environment variable that overrides `base`, e.g. FTBENCH_GPT35_BASE=gpt-3.5-turbo-1106."""
    price_family: str
    """Model family in the price table: [openai.finetuned.<family>] prices the job (training) and the fine-tuned
    model (input, output); [openai.base.<family>] the untuned base model. Also part of the job key: keep it stable."""
    epochs_by_task: Mapping[str, int] = field(default_factory=lambda: dict(SEED_EPOCHS))
    """Epochs per task (the seed's values); other tasks get OpenAI's documented auto rule, made explicit."""
    max_tokens_per_example: int = 65_536
    """OpenAI's training context for the model; longer examples are refused before upload (OpenAI would cut them)."""

    def base_snapshot(self) -> str:
        return os.environ.get(self.base_env) or self.base


@dataclass(frozen=True)
class OpenAIEntry:
    """A chat model behind an OpenAI-style HTTP API."""

    backend: ClassVar[str] = "openai"

    name: str
    description: str = ""
    finetune: OpenAIFineTune | None = None
    """Set for entries fine-tuned by an OpenAI job on the task's train split before evaluation."""
    base_url: str | None = OPENAI_BASE_URL
    """Fixed API root; None means the user's URL (--openai-base-url, else $OPENAI_BASE_URL)."""

    @property
    def finetuned(self) -> bool:
        return self.finetune is not None

    @property
    def price_family(self) -> str | None:
        return self.finetune.price_family if self.finetune else None

    def resolve_base_url(self, override: str | None = None) -> str:
        """The API root this entry talks to; fine-tuned entries always use OpenAI's own."""
        if self.base_url is not None:
            return self.base_url
        url = override or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ConfigError(f"{self.name!r} needs the server's URL: pass --openai-base-url "
                              f"http://HOST:PORT/v1 or set OPENAI_BASE_URL.")
        return url

    def is_paid(self, base_url_override: str | None = None) -> bool:
        """True when requests go to api.openai.com (spend money); a user's URL elsewhere is free."""
        from models.openai_api import is_openai_url

        try:
            return is_openai_url(self.resolve_base_url(base_url_override))
        except ConfigError:
            return False

    def resolve_model_id(self, override: str | None = None) -> str:
        """The model id to request for a base (not fine-tuned) entry: --openai-model, else $FTBENCH_OPENAI_MODEL."""
        model = override or os.environ.get("FTBENCH_OPENAI_MODEL")
        if not model:
            raise ConfigError(f"{self.name!r} needs the served model's name: pass --openai-model NAME (the id the "
                              f"server lists at GET /v1/models) or set FTBENCH_OPENAI_MODEL.")
        return model


CATALOG: dict[str, CatalogEntry | OpenAIEntry] = {
    entry.name: entry
    for entry in [
        CatalogEntry("tiny-random", "tiny-random", description="2-layer random Llama, byte tokenizer: mechanics only"),
        CatalogEntry("tiny-random-lora", "tiny-random", TINY, description="tiny-random + a few LoRA steps: mechanics"),
        CatalogEntry("smollm2-135m", "smollm2-135m", description="SmolLM2-135M-Instruct, embedded default (offline GGUF)"),
        CatalogEntry("smollm2-135m-lora", "smollm2-135m", SMOLLM2_CPU,
                     description="SmolLM2-135M-Instruct + LoRA on the task's train split (CPU recipe)"),
        CatalogEntry("codellama-34b-lora", "codellama/CodeLlama-34b-hf", SEED_CODELLAMA,
                     description="the seed's recipe: CodeLlama-34b in 8-bit + LoRA r=8 on q/k/v/o (GPU: --run-gpu)"),
        OpenAIEntry("gpt-3.5-turbo-ft", "GPT-3.5 Turbo fine-tuned by an OpenAI job (the seed's model; paid; "
                    "base $FTBENCH_GPT35_BASE, default gpt-3.5-turbo-0125)",
                    OpenAIFineTune("gpt-3.5-turbo-0125", "FTBENCH_GPT35_BASE", "gpt-3.5-turbo",
                                   max_tokens_per_example=16_385)),
        OpenAIEntry("gpt-4o-mini-ft", "GPT-4o mini fine-tuned by an OpenAI job (paid; base $FTBENCH_GPT4O_MINI_BASE, "
                    "default gpt-4o-mini-2024-07-18)",
                    OpenAIFineTune("gpt-4o-mini-2024-07-18", "FTBENCH_GPT4O_MINI_BASE", "gpt-4o-mini")),
        OpenAIEntry("gpt-4.1-nano-ft", "GPT-4.1 nano fine-tuned by an OpenAI job (paid; base "
                    "$FTBENCH_GPT41_NANO_BASE, default gpt-4.1-nano-2025-04-14)",
                    OpenAIFineTune("gpt-4.1-nano-2025-04-14", "FTBENCH_GPT41_NANO_BASE", "gpt-4.1-nano")),
        OpenAIEntry("openai-compatible", "any OpenAI-compatible server (vLLM, transformers serve): "
                    "--openai-base-url / $OPENAI_BASE_URL and --openai-model; paid only at api.openai.com",
                    base_url=None),
    ]
}


PATTERNS = {
    "hf:": "hf:<hub id or folder>: any causal LM, as it is",
    "lora:": "lora:<hub id or folder>: any causal LM + LoRA on the task's train split (SmolLM2's CPU recipe; "
             "change it with ftbench finetune --recipe/--set)",
    "vllm:": "vllm:<hub id or folder>: any causal LM served by vLLM (GPU; $FTBENCH_VLLM_TP for tensor parallelism)",
    "vllm-lora:": "vllm-lora:<hub id or folder>: LoRA-fine-tuned here, evaluated through vLLM's LoRA support (GPU)",
}


def get(name: str) -> CatalogEntry | OpenAIEntry:
    """A catalog entry by name, or `hf:<id-or-path>` / `lora:<id-or-path>` for any causal LM; an unknown name
    fails with the known names and the closest match."""
    if name in CATALOG:
        return CATALOG[name]
    prefix, _, weights = name.partition(":")
    if f"{prefix}:" in PATTERNS and weights:
        recipe = SMOLLM2_CPU if prefix.endswith("lora") else None
        runtime = "vllm" if prefix.startswith("vllm") else "hf"
        return CatalogEntry(name, weights, recipe, description=PATTERNS[f"{prefix}:"], runtime=runtime)
    raise UnknownNameError("model", name, list(CATALOG) + [f"{prefix}<hub id or folder>" for prefix in PATTERNS])


def is_known(name: str) -> bool:
    try:
        get(name)
    except UnknownNameError:
        return False
    return True
