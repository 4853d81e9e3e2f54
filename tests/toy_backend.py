"""A whole new backend in one module: the seam's proof (tests/test_backend_seam.py).

`toy-nearest` answers each prompt with the answer of the most similar training prompt (word overlap): a retrieval
baseline "fine-tuned" by memorizing the task's train split, priced like an API at a fixed $0.40 per 1K requests.
Loaded as a pytest plugin (`-p toy_backend`), it registers itself; nothing else in ftbench changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from models import catalog
from models.backends import BACKENDS, PreparedModel, Workload
from models.base import Completion, GenerationConfig, Prompt, Usage

USD_PER_REQUEST = 0.0004


@dataclass(frozen=True)
class ToyEntry:
    backend: ClassVar[str] = "toy"
    price_family: ClassVar[str | None] = None
    name: str
    description: str = "nearest training answer by word overlap (a retrieval baseline)"
    finetuned: bool = True


class NearestAnswerModel:
    def __init__(self, name: str, memory: Sequence[tuple[Prompt, str]]):
        self.name = name
        self.memory = [(set(prompt.text.split()), answer) for prompt, answer in memory]

    def fingerprint(self) -> dict[str, Any]:
        return {"base": "toy-nearest", "adapter": f"memorized:{len(self.memory)}"}

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        return [self._answer(p) for p in prompts]

    def _answer(self, prompt: Prompt) -> Completion:
        started, words = time.perf_counter(), set(prompt.text.split())
        _, answer = max(self.memory, key=lambda item: len(words & item[0]) / (len(item[0]) or 1))
        return Completion(answer, Usage(len(words), len(answer.split())), latency_s=time.perf_counter() - started)


class ToyBackend:
    def prepare(self, entry, work: Workload, settings) -> PreparedModel:
        started = time.perf_counter()
        data = work.training()
        training = {"provider": "toy", "pairs": len(data.train), "wall_s": time.perf_counter() - started,
                    "cached": False, "train_split": data.split}
        return PreparedModel(NearestAnswerModel(entry.name, data.train), training)

    def eval_cost(self, model, entry, completions, hardware, settings):
        return len(completions) * USD_PER_REQUEST, f"{len(completions)} requests x ${USD_PER_REQUEST}"

    def training_cost(self, training, prices):
        return 0.0, f"memorized {training['pairs']} pairs: free"

    def marks(self, entry, openai_base_url):
        return set()

    def prepared_per_task(self, entry):
        return True

    def cache_folders(self, entries):
        return {}

    def runs_here(self, entry):
        return False

    def server(self, entry, prepared, device):
        return None


def register() -> None:
    BACKENDS["toy"] = ToyBackend()  # the registry line
    catalog.CATALOG["toy-nearest"] = ToyEntry("toy-nearest")


register()  # as a plugin (-p toy_backend), before pytest parses --models
