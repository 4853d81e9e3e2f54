"""The seed recipe's shape on random weights: steps B and C of the device check (benchmarks.perf.gpu_check).

  B  LoRA training at CodeLlama-34B's Llama configuration through ftbench's own trainer, r=8 on q/k/v/o, micro-batch
     8 x 512 tokens, gradient checkpointing on and off, at growing depths while memory and time allow: tokens/s and
     peak memory per depth, the 48-layer figure (measured, or projected and labelled so) and the seed's 400 steps x
     128 sequences priced at it. Training speed does not depend on the weight values.
  C  Decode tokens/s at batch 8: ftbench's decoder (HFModel.generate) against transformers' model.generate on the
     same random model.

Each measurement returns what it found as a JSON-able dict and raises Skipped when it cannot run; gpu_check decides
the budget, writes the results and renders them.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED_LAYERS = 48
SEED_RUN = {"steps": 400, "sequences_per_step": 128, "tokens_per_sequence": 512}
"""The seed's Code Llama job: 400 optimizer steps of 8 x 16 accumulated sequences, at most 512 tokens each."""
SEED_TOKENS = SEED_RUN["steps"] * SEED_RUN["sequences_per_step"] * SEED_RUN["tokens_per_sequence"]
SEED_A40 = {"hardware": "a40", "hours": 7.0, "cost_usd": 3.32}
"""SEED.md's training cost table, SQL row: a 7-hour job on one A40 for $3.32."""
CODELLAMA_34B = {"hidden_size": 8192, "intermediate_size": 22016, "num_attention_heads": 64,
                 "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 16384}
"""codellama/CodeLlama-34b-hf's config.json (48 layers): SEED.md and the recipe name the model, not its shape."""
EFFICIENCY_GUESS = 0.3
"""Share of a bare matrix product's FLOP/s a training step is assumed to reach, only to predict whether a depth fits
the budget before running it; no reported figure uses it."""


@dataclass(frozen=True)
class Shape:
    """The model and the work of one check: the seed's or a tiny stand-in."""

    name: str
    model: dict[str, int]
    """LlamaConfig fields (the depth comes from `depths` / `decode_layers`)."""
    depths: tuple[int, ...]
    """Layer counts step B trains, shallowest first."""
    sequences: int = 8
    tokens: int = 512
    train_steps: int = 4
    """Optimizer steps per depth; the first is warm-up and untimed."""
    decode_layers: int = SEED_LAYERS
    decode_prompts: int = 16
    decode_new_tokens: int = 64


SEED_SHAPE = Shape("CodeLlama-34B (seed)", CODELLAMA_34B, depths=(4, 12, SEED_LAYERS))
TINY_SHAPE = Shape("tiny (2 layers, hidden 64; exercises the check, says nothing about the seed)",
                   {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
                    "vocab_size": 512, "max_position_embeddings": 2048},
                   depths=(1, 2), tokens=64, train_steps=3, decode_layers=2, decode_prompts=16, decode_new_tokens=16)


class Skipped(Exception):
    """A step, or a part of one, that did not run; the message says why."""


@dataclass(frozen=True)
class Setting:
    """Where a measurement runs, at which shape, and how long it may still take."""

    device: str
    """'cuda' or 'cpu'."""
    shape: Shape
    time_left: Callable[[], float]
    """Seconds this step may still use: the check's budget less what its later steps need."""


def log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


# ---- step B: training throughput at the seed's shape ----

def training(setting: Setting) -> dict[str, Any]:
    from models.precision import resolve

    shape, device = setting.shape, setting.device
    choice = resolve("auto", device)
    rate = matmul_rate(device, choice.precision)
    runs: list[dict[str, Any]] = []
    for checkpointing in (True, False):
        for layers in shape.depths:
            run = _train_at_depth(setting, layers, checkpointing, choice.precision, rate, runs)
            runs.append(run)
            log(f"  {layers} layers, checkpointing {'on' if checkpointing else 'off'}: {_run_summary(run)}")
            if run["outcome"] != "measured":
                break  # a deeper model fits neither the time nor the memory
    found = {"precision": choice.precision, "precision_reason": choice.reason,
             "micro_batch": {"sequences": shape.sequences, "tokens": shape.tokens},
             "recipe": seed_recipe(shape, choice.precision).to_json(),
             "matmul_tflops": rate / 1e12, "runs": runs,
             "memory_measure": "torch.cuda.max_memory_allocated" if device == "cuda"
             else "peak resident set size of the process (VmHWM), reset before each depth"}
    projections = [p for p in (_projection(setting, runs, mode) for mode in (True, False)) if p]
    if not projections:
        return found | {"outcome": "skipped", "reason": f"no depth could be measured: {runs[0]['reason']}"}
    headline = _headline(projections)
    reason = (f"{headline['tokens_per_s']:.0f} tokens/s at {SEED_LAYERS} layers ({headline['basis']}), the seed's run "
              f"in {headline['projected_hours']:.2f} h" if headline
              else f"no mode fits the device's memory at {SEED_LAYERS} layers")
    return found | {"projections": projections, "headline": headline, "reason": reason}


def _train_at_depth(setting: Setting, layers: int, checkpointing: bool, precision: str, rate: float,
                    earlier: list[dict[str, Any]]) -> dict[str, Any]:
    label = {"layers": layers, "gradient_checkpointing": checkpointing}
    try:
        _check_depth_fits(setting, layers, checkpointing, precision, rate, earlier)
        return label | {"outcome": "measured"} | _measure_training(setting, layers, checkpointing, precision)
    except Skipped as why:
        return label | {"outcome": "skipped", "reason": str(why)}
    except Exception as err:
        if not _is_out_of_memory(err):
            raise
        return label | {"outcome": "out of memory", "reason": str(err).splitlines()[0][:300]}
    finally:
        free_memory()


def _check_depth_fits(setting: Setting, layers: int, checkpointing: bool, precision: str, rate: float,
                      earlier: list[dict[str, Any]]) -> None:
    """Raise Skipped when this depth's weights, its projected peak memory or its predicted time would not fit."""
    shape = setting.shape
    weights_gib = weight_bytes(shape.model, layers, precision) / 2**30
    free_gib = _free_memory_gib(setting.device)
    if weights_gib > 0.9 * free_gib:
        raise Skipped(f"the weights alone take {weights_gib:.1f} GiB, {free_gib:.1f} GiB free")
    measured = [r for r in earlier if r["outcome"] == "measured" and r["gradient_checkpointing"] == checkpointing]
    if len(measured) >= 2:
        peak, _ = project([(r["layers"], r["peak_memory_gib"]) for r in measured], layers)
        device_gib = device_memory_gib(setting.device)
        if peak > 0.95 * device_gib:
            raise Skipped(f"projected peak {peak:.0f} GiB exceeds the device's {device_gib:.0f} GiB")
    if measured:
        per_step, _ = project([(r["layers"], r["seconds_per_step"]) for r in measured], layers)
        how = "from the depths measured"
    else:
        flops = train_flops(shape.model, layers, shape.sequences * shape.tokens, checkpointing)
        per_step = flops / (rate * EFFICIENCY_GUESS)
        how = f"guessed from a {rate / 1e12:.2f} TFLOP/s matrix product at {EFFICIENCY_GUESS:.0%} efficiency"
    needed = per_step * shape.train_steps
    left = setting.time_left()
    if needed > left:
        raise Skipped(f"time budget: {shape.train_steps} steps need about {needed:.0f} s ({how}), "
                      f"{max(left, 0):.0f} s left for them")


def _measure_training(setting: Setting, layers: int, checkpointing: bool, precision: str) -> dict[str, Any]:
    """Train LoRA through ftbench's own loop (models.finetune.lora) on random weights and random tokens."""
    import torch
    from accelerate import Accelerator

    from models.finetune import lora

    shape, device = setting.shape, setting.device
    _reset_peak_memory(device)
    model = random_llama(shape.model, layers, precision, device)
    recipe = seed_recipe(shape, precision)
    clock = _StepClock(setting)
    options = lora.RunOptions(checkpoint_every=0, progress=False, gradient_checkpointing=checkpointing,
                              micro_batch_size=shape.sequences, on_step=clock)
    ids = torch.randint(0, shape.model["vocab_size"], (shape.sequences * shape.train_steps, shape.tokens),
                        generator=torch.Generator().manual_seed(0)).tolist()
    examples = [{"input_ids": row, "labels": list(row)} for row in ids]  # the seed's loss: labels = input_ids
    accelerator = Accelerator(cpu=device == "cpu")
    peft_model = lora._setup(model, recipe, options)
    try:
        with tempfile.TemporaryDirectory() as scratch:  # where checkpoints would go: none are written
            lora._fit(peft_model, examples, [], recipe, options, accelerator, pad_id=0, partial=Path(scratch))
    finally:
        accelerator.free_memory()  # the accelerator keeps references to what it prepared
    seconds_per_step = (clock.times[-1] - clock.times[1]) / (len(clock.times) - 2)  # step 1 is warm-up
    return {"steps_timed": len(clock.times) - 2, "seconds_per_step": seconds_per_step,
            "tokens_per_s": shape.sequences * shape.tokens / seconds_per_step,
            "peak_memory_gib": _peak_memory_gib(device)}


def seed_recipe(shape: Shape, precision: str):
    """The seed's Code Llama recipe as measured here: full-precision base weights (bitsandbytes' 8-bit is not on the
    device machine, and bf16 is what `auto` picks on a GPU that has it), one micro-batch per optimizer step (the
    seed accumulated 16: tokens/s does not change), this shape's steps and lengths."""
    from models.finetune.recipe import SEED_CODELLAMA

    return dataclasses.replace(SEED_CODELLAMA, quantization=None, precision=precision, grad_accum=1, warmup_steps=0,
                               max_steps=shape.train_steps, batch_size=shape.sequences, max_length=shape.tokens)


class _StepClock:
    """The trainer's on_step callback: when each optimizer step ended (the device drained first), and a stop once
    the step's time runs out."""

    def __init__(self, setting: Setting):
        self.setting = setting
        self.times = [time.perf_counter()]

    def __call__(self, step: int) -> None:
        _synchronize(self.setting.device)
        self.times.append(time.perf_counter())
        steps = self.setting.shape.train_steps
        if step < steps and self.setting.time_left() < 0:
            raise Skipped(f"time budget ran out after {step} of {steps} steps")


def _projection(setting: Setting, runs: list[dict[str, Any]], checkpointing: bool) -> dict[str, Any] | None:
    """The 48-layer figures of one mode, and the seed's run priced at them; None when nothing was measured."""
    mine = [r for r in runs if r["gradient_checkpointing"] == checkpointing]
    measured = [r for r in mine if r["outcome"] == "measured"]
    if not measured:
        return None
    per_step, basis = project([(r["layers"], r["seconds_per_step"]) for r in measured])
    peak, _ = project([(r["layers"], r["peak_memory_gib"]) for r in measured])
    too_big = next((r for r in mine if r["outcome"] == "out of memory"), None)
    tokens_per_s = setting.shape.sequences * setting.shape.tokens / per_step
    device_gib = device_memory_gib(setting.device)
    return {"gradient_checkpointing": checkpointing, "basis": basis, "tokens_per_s": tokens_per_s,
            "peak_memory_gib": peak, "device_memory_gib": device_gib,
            "fits": too_big is None and peak <= device_gib,
            "fits_reason": f"out of memory at {too_big['layers']} layers" if too_big
            else "peak memory at 48 layers vs the device's",
            **seed_cost(tokens_per_s, _price_key(setting.device))}


def _headline(projections: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The faster mode among those that fit the device's memory at full depth."""
    fitting = [p for p in projections if p["fits"]]
    return max(fitting, key=lambda p: p["tokens_per_s"]) if fitting else None


def project(points: list[tuple[int, float]], depth: int = SEED_LAYERS) -> tuple[float, str]:
    """A quantity measured at some depths, carried to `depth`, and how: the measurement itself at that depth; else
    the line through the two deepest points (a fixed part, embeddings and output layer, plus a part per layer);
    from one point, scaled by depth / layers (an overestimate: it multiplies the fixed part too). A line that falls
    with depth is noise: the part per layer is taken as 0, never negative."""
    points = sorted(points)
    exact = [value for layers, value in points if layers == depth]
    if exact:
        return exact[-1], f"measured at {depth} layers"
    if len(points) == 1:
        layers, value = points[0]
        return value * depth / layers, f"projected: scaled from {layers} layers by {depth}/{layers}"
    (near, near_value), (far, far_value) = points[-2:]
    per_layer = max(0.0, (far_value - near_value) / (far - near))
    return far_value + per_layer * (depth - far), f"projected: line through {near} and {far} layers"


def seed_cost(tokens_per_s: float, price_key: str) -> dict[str, Any]:
    """The seed's run (SEED_TOKENS tokens) at this throughput: hours, and dollars at the price table's rate."""
    from models.pricing import load_prices

    table = load_prices()
    hours = SEED_TOKENS / tokens_per_s / 3600
    rate = table.hourly_rate(price_key)
    return {"seed_tokens": SEED_TOKENS, "projected_hours": hours, "price_key": price_key, "hourly_usd": rate,
            "projected_cost_usd": None if rate is None else hours * rate, "prices_date": table.date,
            "seed": SEED_A40 | {"hourly_usd": table.hourly_rate(SEED_A40["hardware"])}}


def _price_key(device: str) -> str:
    from models.pricing import detect_hardware

    return detect_hardware().key if device == "cuda" else "cpu"


def _run_summary(run: dict[str, Any]) -> str:
    if run["outcome"] != "measured":
        return f"{run['outcome']}: {run['reason']}"
    return f"{run['tokens_per_s']:.0f} tokens/s, {run['seconds_per_step']:.2f} s/step, {run['peak_memory_gib']:.1f} GiB"


# ---- step C: decoding throughput ----

def decoding(setting: Setting) -> dict[str, Any]:
    from benchmarks.data import resolve_data
    from benchmarks.tasks import get_task
    from models.base import GenerationConfig
    from models.hf import HFModel
    from models.precision import resolve
    from models.weights import byte_level_tokenizer

    shape, device, tokenizer = setting.shape, setting.device, byte_level_tokenizer()
    precision = resolve("auto", device).precision
    model_shape = shape.model | {"vocab_size": len(tokenizer)}  # a byte vocabulary: every generated id decodes
    weights_gib = weight_bytes(model_shape, shape.decode_layers, precision) / 2**30
    if weights_gib > 0.9 * _free_memory_gib(device):
        raise Skipped(f"the weights alone take {weights_gib:.1f} GiB, {_free_memory_gib(device):.1f} GiB free")
    model = random_llama(model_shape, shape.decode_layers, precision, device,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    ours = HFModel("random", model, tokenizer, {"base": "random"}, progress=False)
    task = get_task("spider")
    prompts = [task.prompt(e) for e in task.examples(resolve_data("fixtures"), task.eval_split)][: shape.decode_prompts]
    config = GenerationConfig(max_new_tokens=shape.decode_new_tokens, stop=(), batch_size=8)
    ours.generate(prompts[:2], config)  # warm-up: first-call allocations are nobody's cost
    _transformers_generate(ours, prompts[:2], config)
    contenders = {"ftbench": lambda: [(c.text, c.usage.completion_tokens) for c in ours.generate(prompts, config)],
                  "transformers": lambda: _transformers_generate(ours, prompts, config)}
    timed = {name: _timed(device, run) for name, run in contenders.items()}
    same = sum(a == b for a, b in zip(timed["ftbench"].pop("answers"), timed["transformers"].pop("answers")))
    ratio = timed["ftbench"]["tokens_per_s"] / timed["transformers"]["tokens_per_s"]
    return {"model": {**model_shape, "num_hidden_layers": shape.decode_layers, "precision": precision},
            "prompts": len(prompts), "batch_size": config.batch_size, "max_new_tokens": config.max_new_tokens,
            "prompt_tokens": ours.stats.prompt_tokens + ours.stats.prefix_tokens * len(prompts),
            "prefix_reuse_tokens": ours.stats.prefix_tokens, **timed, "ftbench_over_transformers": ratio,
            "same_answers": same,
            "reason": f"ftbench {timed['ftbench']['tokens_per_s']:.0f} tokens/s, model.generate "
                      f"{timed['transformers']['tokens_per_s']:.0f} ({ratio:.2f}x); same answers {same}/{len(prompts)}"}


def _transformers_generate(hf, prompts, config) -> list[tuple[str, int]]:
    """transformers' greedy generate on ftbench's batches (longest prompts first), left-padded: (text, tokens up to
    EOS) per prompt, in the prompts' order."""
    import torch

    texts = [p.text for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(hf.tokenizer(texts[i]).input_ids))
    answers: list[tuple[str, int]] = [("", 0)] * len(texts)
    for start in range(0, len(order), config.batch_size):
        batch = order[start : start + config.batch_size]
        inputs = hf.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True).to(hf.device)
        with torch.inference_mode():
            out = hf.model.generate(**inputs, do_sample=False, max_new_tokens=config.max_new_tokens,
                                    pad_token_id=hf.pad_id)
        for i, row in zip(batch, out[:, inputs.input_ids.shape[1] :].tolist()):
            ends = [n + 1 for n, token in enumerate(row) if token in hf.eos_ids]
            row = row[: ends[0]] if ends else row  # a finished row is padded after its EOS
            answers[i] = (hf.tokenizer.decode(row, skip_special_tokens=True), len(row))
    return answers


def _timed(device: str, run: Callable[[], list[tuple[str, int]]]) -> dict[str, Any]:
    _synchronize(device)
    started = time.perf_counter()
    answers = run()
    _synchronize(device)
    seconds = time.perf_counter() - started
    tokens = sum(n for _, n in answers)
    return {"seconds": seconds, "generated_tokens": tokens, "tokens_per_s": tokens / seconds,
            "answers": [text for text, _ in answers]}


# ---- models, FLOPs and memory ----

def random_llama(model_shape: dict[str, int], layers: int, precision: str, device: str, **config_fields):
    """A LlamaForCausalLM of this shape with random weights, built directly on `device` in `precision`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from models.precision import torch_dtype

    config = LlamaConfig(**model_shape, num_hidden_layers=layers, **config_fields)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype(precision))  # as from_pretrained does: no fp32 copy on the way
    try:
        torch.manual_seed(0)
        with torch.device(device):
            return LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)


def layer_params(model_shape: dict[str, int]) -> int:
    """Weights of one Llama decoder layer's projections (norms are negligible)."""
    hidden, inner = model_shape["hidden_size"], model_shape["intermediate_size"]
    kv = hidden // model_shape["num_attention_heads"] * model_shape["num_key_value_heads"]
    return 2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inner


def weight_bytes(model_shape: dict[str, int], layers: int, precision: str) -> int:
    """Bytes of the weights: layers, input embeddings and output layer."""
    params = layers * layer_params(model_shape) + 2 * model_shape["hidden_size"] * model_shape["vocab_size"]
    return params * (4 if precision == "fp32" else 2)


def train_flops(model_shape: dict[str, int], layers: int, tokens: int, checkpointing: bool) -> float:
    """Matrix-product FLOPs of one LoRA training pass: forward 2 x weights x tokens, backward about as much (frozen
    weights: activation gradients only), and with checkpointing the forward once more."""
    matmul_params = layers * layer_params(model_shape) + model_shape["hidden_size"] * model_shape["vocab_size"]
    return (6 if checkpointing else 4) * matmul_params * tokens


def matmul_rate(device: str, precision: str) -> float:
    """FLOP/s of a square matrix product here: the yardstick that predicts whether a depth fits the budget."""
    import torch

    from models.precision import torch_dtype

    n = 4096 if device == "cuda" else 512
    a, b = (torch.randn(n, n, device=device, dtype=torch_dtype(precision)) for _ in range(2))
    a @ b
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(5):
        a @ b
    _synchronize(device)
    return 5 * 2 * n**3 / (time.perf_counter() - started)


def _synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _is_out_of_memory(err: BaseException) -> bool:
    import torch

    return any(isinstance(e, (torch.OutOfMemoryError, MemoryError)) for e in (err, err.__cause__))


def free_memory() -> None:
    """Give back what the last measurement held: Python's garbage, and CUDA's cached blocks."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_memory_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_properties(0).total_memory / 2**30
    return _meminfo_kib("MemTotal") / 2**20


def _free_memory_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.mem_get_info()[0] / 2**30
    return _meminfo_kib("MemAvailable") / 2**20


def _meminfo_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
    if not match:
        raise RuntimeError(f"/proc/meminfo has no {field} line; this check reads CPU memory on Linux only")
    return int(match.group(1))


def _reset_peak_memory(device: str) -> None:
    """Start a fresh peak: CUDA's allocator statistics, or Linux's high-water mark of resident memory."""
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM (Linux >= 4.0)


def _peak_memory_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if not match:
        raise RuntimeError("/proc/self/status has no VmHWM line; this check reads CPU memory on Linux only")
    return int(match.group(1)) / 2**20
