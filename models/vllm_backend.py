"""vLLM backend for users with GPUs: the same Model protocol, LoRA adapters through vLLM's LoRA support.

vLLM is imported inside the backend, so the catalog and every other backend work without it; a machine without it
gets an error naming the pip extra. Decoding is greedy (temperature 0), like the transformers backend, with the
task's stop strings passed to vLLM so each sequence stops on its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.base import Completion, GenerationConfig, Prompt, Usage
from models.errors import MissingDependencyError


def _vllm():
    try:
        import vllm
    except ImportError as err:
        raise MissingDependencyError(
            f"the vLLM backend needs vllm ({err}); install it on a CUDA machine with `pip install 'ftbench[vllm]'`."
        ) from err
    return vllm


class VLLMModel:
    """A model served in-process by vLLM, optionally with one LoRA adapter applied per request."""

    def __init__(self, name: str, weights: str | Path, fingerprint: dict[str, Any], *, adapter: Path | None = None,
                 tensor_parallel_size: int = 1, max_lora_rank: int = 64, **engine_args: Any):
        vllm = _vllm()
        self.name = name
        self._fingerprint = dict(fingerprint) | {"backend": f"vllm-{vllm.__version__}"}
        self._adapter = adapter
        self.engine = vllm.LLM(model=str(weights), tensor_parallel_size=tensor_parallel_size,
                               enable_lora=adapter is not None, max_lora_rank=max_lora_rank, **engine_args)

    def fingerprint(self) -> dict[str, Any]:
        return dict(self._fingerprint)

    def generate(self, prompts: Sequence[Prompt], config: GenerationConfig) -> list[Completion]:
        vllm = _vllm()
        params = vllm.SamplingParams(temperature=0.0, max_tokens=config.max_new_tokens, stop=list(config.stop) or None)
        lora = None
        if self._adapter is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, str(self._adapter))
        started = time.perf_counter()
        outputs = self.engine.generate([p.text for p in prompts], params, lora_request=lora, use_tqdm=False)
        latency = (time.perf_counter() - started) / max(len(prompts), 1)  # vLLM schedules continuously: share evenly
        return [self._completion(output, latency) for output in outputs]

    @staticmethod
    def _completion(output, latency: float) -> Completion:
        choice = output.outputs[0]
        return Completion(
            text=choice.text,
            usage=Usage(prompt_tokens=len(output.prompt_token_ids or ()), completion_tokens=len(choice.token_ids)),
            latency_s=latency,
            machine_s=latency,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
        )
