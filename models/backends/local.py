"""Weights that run on this machine: transformers (CPU or GPU) or vLLM (GPU), LoRA-fine-tuned here when the entry has
a recipe. Priced by machine time x the hardware's hourly rate."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.backends.base import (BackendSettings, PreparedModel, Workload, generation_machine_cost, machine_cost,
                                  with_prediction_cache)
from models.base import Completion, Model, fingerprint_rows
from models.pricing import Hardware, PriceTable


@dataclass(frozen=True)
class TrainSettings:
    """How LoRA fine-tuning runs (none of it changes the adapter)."""

    checkpoint_every: int = 20
    """Resumable checkpoint every N optimizer steps (0: never)."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass (None: the device's default, see models.finetune.lora.RunOptions)."""
    micro_batch_size: int | None = None
    """Pairs per forward/backward pass (None: the device's default); the gradient stays the whole batch's."""
    recipe_file: str | None = None
    """JSON of recipe fields overriding every LoRA entry's recipe (pytest --recipe)."""


class LocalBackend:
    """`models.catalog.CatalogEntry`: base weights as they are, or base + a LoRA adapter trained on the task."""

    def prepare(self, entry, work: Workload, settings: BackendSettings) -> PreparedModel:
        if not entry.finetuned:
            return PreparedModel(with_prediction_cache(entry.load(), settings, save_every=256), None)
        from models.finetune.lora import RunOptions, finetune  # torch: only for entries trained here

        if settings.train.recipe_file:
            recipe = type(entry.recipe).from_file(settings.train.recipe_file, entry.recipe)
            entry = dataclasses.replace(entry, recipe=recipe)
        data = work.training()
        train = settings.train
        adapter = finetune(entry.load_base, entry.base_fingerprint(), data.pairs("train"), entry.recipe,
                           validation=data.pairs("validation"), module_names=entry.module_names(),
                           options=RunOptions(checkpoint_every=train.checkpoint_every, progress=settings.progress,
                                              gradient_checkpointing=train.gradient_checkpointing,
                                              micro_batch_size=train.micro_batch_size))
        # The weights' own hash too: a retrained adapter with other weights (another torch, GPU kernels) is another
        # model
        adapter_fingerprint = {"adapter": f"sha256:{adapter.key[:32]}",
                               "adapter_weights": f"sha256:{adapter.weights_sha256}",
                               "recipe": adapter.recipe.to_json()}
        training = adapter.info | {"cached": adapter.cached, "train_split": data.split,
                                   "validation": data.validation_how,
                                   "train_fingerprint": fingerprint_rows(list(data.train_rows))}
        model = entry.load(adapter.path, adapter_fingerprint)
        return PreparedModel(with_prediction_cache(model, settings, save_every=256), training, adapter.path)

    def eval_cost(self, model: Model, entry, completions: Sequence[Completion], hardware: Hardware,
                  settings: BackendSettings) -> tuple[float | None, str]:
        # transformers decodes a batch and each latency runs from its start; vLLM records each item's share
        at_once = max(1, min(settings.batch_size, len(completions))) if entry.runtime == "hf" else 1
        return generation_machine_cost(completions, hardware, settings.prices, at_once)

    def training_cost(self, training: dict[str, Any], prices: PriceTable) -> tuple[float | None, str | None]:
        """A LoRA run's wall time x the hourly rate x the devices it ran on (GPUs: processes x GPUs each; CPU: one
        machine)."""
        processes = training.get("processes", 1)
        return machine_cost(training["wall_s"], training["hardware"], processes, prices,
                            f"wall time {training['wall_s']:.1f} s, {processes} process(es)")

    def marks(self, entry, openai_base_url: str | None) -> set[str]:
        return {"gpu"} if entry.requires_gpu else set()

    def prepared_per_task(self, entry) -> bool:
        return entry.finetuned

    def cache_folders(self, entries: Sequence[Any]) -> dict[Path, str]:
        if not any(e.finetuned for e in entries):
            return {}
        from models.finetune.lora import adapter_cache

        return {adapter_cache(): "FTBENCH_ADAPTER_CACHE"}

    def runs_here(self, entry) -> bool:
        return True

    def server(self, entry, prepared: PreparedModel, device: str):
        """On a GPU vLLM serves the base and applies the adapter beside it; on CPU `transformers serve` (no adapter
        support) serves a folder with the adapter merged in, as the evaluated HFModel runs it."""
        from models.serving import LocalServer, prepare_served_folder

        if entry.runtime == "vllm" or device.startswith("cuda"):
            from models.weights import smollm2_folder

            weights = smollm2_folder()[0] if entry.weights == "smollm2-135m" else entry.weights
            return LocalServer(weights, engine="vllm", adapter=prepared.adapter, device=device)
        return LocalServer(prepare_served_folder(entry, prepared.adapter).path, device=device)
