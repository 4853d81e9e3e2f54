"""The prepared device check: ftbench's GPU path run for real, in one command that stops by itself.

    python -m benchmarks.perf.gpu_check --out DIR [--device cuda|cpu] [--tiny] [--budget-s 480] [--steps A,B,C]

  A  The gpu-marked tests that need no download, through pytest with --run-gpu (outcomes from its junit XML). On a
     CPU the same tests are collected and skipped ("no CUDA"): the plumbing is checked, nothing is claimed.
  B  The seed recipe's shape on random weights (training speed does not depend on the weight values): CodeLlama-34B's
     Llama configuration, LoRA r=8 on q/k/v/o through ftbench's trainer, micro-batch 8 x 512 tokens, gradient
     checkpointing on and off, at growing depths while memory and time allow. Tokens/s and peak memory per depth;
     the 48-layer figure, measured or else projected from the depths measured (and labelled so), priced as the
     seed's 400 steps x 128 sequences x 512 tokens at this device's hourly rate, beside the seed's 7 h / $3.32 on
     an A40.
  C  Decode tokens/s at batch 8: ftbench's decoder (HFModel.generate) against transformers' model.generate on the
     same random model.

Every step ends passed, failed or skipped with its reason, and a failing step never stops the others. A time
budget is checked between steps and between depths: what no longer fits is skipped and says so. DIR/gpu_check.json
and DIR/gpu_check.md are rewritten atomically after every step, so a run killed from outside keeps what it did.
--tiny swaps in a 2-layer model that runs in seconds on a CPU (the unit suite runs it). Exit status: 1 when a step
failed, else 0. See docs/gpu-check.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SEED_LAYERS = 48
SEED_RUN = {"steps": 400, "sequences_per_step": 128, "tokens_per_sequence": 512}
"""The seed's Code Llama job: 400 optimizer steps of 8 x 16 accumulated sequences, at most 512 tokens each."""
SEED_TOKENS = SEED_RUN["steps"] * SEED_RUN["sequences_per_step"] * SEED_RUN["tokens_per_sequence"]
SEED_A40 = {"hardware": "a40", "hours": 7.0, "cost_usd": 3.32}
"""SEED.md's training cost table, SQL row: a 7-hour job on one A40 for $3.32."""
CODELLAMA_34B = {"hidden_size": 8192, "intermediate_size": 22016, "num_attention_heads": 64,
                 "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 16384}
"""codellama/CodeLlama-34b-hf's config.json (48 layers): SEED.md and the recipe name the model, not its shape."""
NEEDS_DOWNLOAD = {"tests/test_vllm.py": "vLLM and the SmolLM2 weights from the hub"}
"""gpu-marked test files that step A leaves out, and what they would fetch (the device machine has no network)."""
TESTS_TIMEOUT_S = 240.0
EFFICIENCY_GUESS = 0.3
"""Share of a bare matrix product's FLOP/s a training step is assumed to reach, only to predict whether a depth fits
the budget before running it; no reported figure uses it."""
OUTCOME_OF_TAG = {"failure": "failed", "error": "error", "skipped": "skipped"}


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


class Budget:
    """Wall-clock seconds left for the whole check."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.total, self._clock = seconds, clock
        self._deadline = clock() + seconds

    def left(self) -> float:
        return self._deadline - self._clock()


@dataclass
class Context:
    device: str
    """'cuda' or 'cpu'."""
    shape: Shape
    budget: Budget
    out: Path
    reserve_s: float = 0.0
    """Seconds the steps after the current one need: the current one stops short of them."""


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    run: Callable[[Context], dict[str, Any]]
    """Returns what the step found, with 'outcome' and 'reason' unless it simply passed; raises Skipped to skip."""
    needs_s: float = 30.0
    """Seconds of budget below which the step is not started."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        _parser().error(f"--device cuda: torch {torch.__version__} sees no CUDA device here; run with --device cpu "
                        f"(add --tiny for a quick run) or on a GPU machine")
    if args.tiny:  # a model this small gains nothing from threads, and loses much to contention on a shared CPU
        torch.set_num_threads(1)
    context = Context(device, TINY_SHAPE if args.tiny else SEED_SHAPE, Budget(args.budget_s), Path(args.out))
    steps = [step for step in STEPS if step.key in args.steps]
    command = "python -m benchmarks.perf.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv)
    result = run_check(context, steps, command)
    print(markdown(result))
    return 1 if any(s["outcome"] == "failed" for s in result["steps"].values()) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when torch sees one")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model instead of the seed's shape")
    parser.add_argument("--budget-s", type=_positive_seconds, default=480.0,
                        help="wall-clock seconds for the whole check; what no longer fits is skipped (default 480)")
    parser.add_argument("--steps", type=_step_keys, default="ABC", help="which steps to run, e.g. B,C (default: all)")
    return parser


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _step_keys(text: str) -> str:
    keys = text.replace(",", "").upper()
    if not keys or set(keys) - {"A", "B", "C"}:
        raise argparse.ArgumentTypeError(f"expected step letters among A, B, C (e.g. B,C), got {text!r}")
    return keys


# ---- running steps and writing the results ----

def run_check(context: Context, steps: list[Step], command: str) -> dict[str, Any]:
    """Run the steps in order within the budget, rewriting both result files after each; the final result."""
    result: dict[str, Any] = {
        "command": command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": context.device, "shape": context.shape.name, "budget_s": context.budget.total,
        "environment": _environment(context.device),
        "steps": {s.key: {"title": s.title, "outcome": "skipped", "reason": "not reached"} for s in steps},
    }
    write_results(context.out, result)
    for index, step in enumerate(steps):
        context.reserve_s = sum(later.needs_s for later in steps[index + 1 :])
        _log(f"step {step.key}: {step.title} ({context.budget.left():.0f} s of budget left)")
        result["steps"][step.key] = {"title": step.title} | _run_step(step, context)
        write_results(context.out, result)
        _log(f"step {step.key}: {result['steps'][step.key]['outcome']} {result['steps'][step.key]['reason']}")
    return result


def _run_step(step: Step, context: Context) -> dict[str, Any]:
    left = context.budget.left()
    if left < step.needs_s:
        return {"outcome": "skipped", "reason": f"time budget: {max(left, 0):.0f} s of {context.budget.total:.0f} s "
                                                f"left, the step needs at least {step.needs_s:.0f} s"}
    started = time.monotonic()
    try:
        found = step.run(context)
        outcome, reason = found.pop("outcome", "passed"), found.pop("reason", "")
    except Skipped as why:
        found, outcome, reason = {}, "skipped", str(why)
    except Exception as err:  # a broken step is a finding: record it and go on with the next
        found, outcome, reason = {"traceback": traceback.format_exc(limit=-6)}, "failed", f"{type(err).__name__}: {err}"
    finally:
        _free_memory()
    return {"outcome": outcome, "reason": reason, "seconds": time.monotonic() - started} | found


def write_results(out: Path, result: dict[str, Any]) -> None:
    """gpu_check.json (strict JSON: a non-finite number becomes null) and gpu_check.md, each written whole."""
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(out / "gpu_check.json", json.dumps(_finite(result), indent=2, allow_nan=False) + "\n")
    _write_atomically(out / "gpu_check.md", markdown(result))


def _write_atomically(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(text)
    os.chmod(file.name, 0o644)  # mkstemp makes it private; results are for everyone who reads the folder
    os.replace(file.name, path)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _environment(device: str) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from models.precision import cpu_description

    found = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
             "peft": peft.__version__, "cpu": f"{cpu_description()}, {os.cpu_count()} cores"}
    if device == "cuda":
        found |= {"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": _device_memory_gib("cuda")}
    return found


def _log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


# ---- step A: the gpu-marked tests ----

def step_tests(context: Context) -> dict[str, Any]:
    files = [path for path in gpu_test_files() if path not in NEEDS_DOWNLOAD]
    left_out = [{"file": path, "reason": f"needs {what}"} for path, what in NEEDS_DOWNLOAD.items()]
    if not files:
        raise Skipped(f"no gpu-marked test file besides {sorted(NEEDS_DOWNLOAD)}")
    cuda = context.device == "cuda"
    # At least the step's minimum, even when that eats into the later steps' share; at most TESTS_TIMEOUT_S.
    timeout = min(TESTS_TIMEOUT_S, max(STEPS_BY_KEY["A"].needs_s, context.budget.left() - context.reserve_s))
    with tempfile.TemporaryDirectory() as folder:
        junit = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", *files, "-m", "gpu", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={junit}", *(["--run-gpu"] if cuda else [])]
        environment = os.environ | {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        try:
            done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            hung = timeout >= TESTS_TIMEOUT_S  # else the budget cut it short: inconclusive, not a failure
            return {"outcome": "failed" if hung else "skipped", "command": _shell(command), "left_out": left_out,
                    "reason": f"pytest did not finish within {timeout:.0f} s and was killed"
                              f"{'' if hung else ' (all the time budget allowed)'}", "output_tail": _tail(err.stdout)}
        tests = parse_junit(junit.read_text()) if junit.exists() else []
    found = {"command": _shell(command), "tests": tests, "left_out": left_out, "pytest_exit": done.returncode}
    return found | _tests_verdict(tests, done.returncode, cuda, done.stdout + done.stderr)


def gpu_test_files(root: Path = ROOT) -> list[str]:
    """Test files (relative to the repository) that mark a test gpu."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "tests").glob("test_*.py")
                  if "mark.gpu" in p.read_text())


def parse_junit(text: str) -> list[dict[str, Any]]:
    """Each test case of a pytest junit XML report: id, outcome (passed, failed, error, skipped), message, seconds."""
    cases = []
    for case in ET.fromstring(text).iter("testcase"):
        verdict = next((child for child in case if child.tag in OUTCOME_OF_TAG), None)
        cases.append({"test": "::".join(part for part in (case.get("classname"), case.get("name")) if part),
                      "outcome": "passed" if verdict is None else OUTCOME_OF_TAG[verdict.tag],
                      "message": "" if verdict is None else (verdict.get("message") or "")[:500],
                      "seconds": float(case.get("time") or 0)})
    return cases


def _tests_verdict(tests: list[dict[str, Any]], exit_code: int, cuda: bool, output: str) -> dict[str, Any]:
    counts = Counter(t["outcome"] for t in tests)
    broken = [t["test"] for t in tests if t["outcome"] in ("failed", "error")]
    if broken or exit_code not in (0, 5):  # 5: pytest collected nothing
        return {"outcome": "failed", "output_tail": _tail(output),
                "reason": f"{len(broken)} of {len(tests)} failed: {', '.join(broken)}" if broken
                else f"pytest exited with {exit_code}"}
    if not tests:
        return {"outcome": "skipped", "reason": f"pytest selected no test (exit {exit_code})"}
    if not cuda:
        return {"outcome": "skipped", "reason": f"no CUDA: {len(tests)} gpu-marked test(s) collected and skipped "
                                                f"here; their CPU counterparts run in the unit suite"}
    if not counts["passed"]:
        return {"outcome": "skipped", "reason": f"all {len(tests)} selected tests skipped themselves"}
    return {"outcome": "passed", "reason": f"{counts['passed']} passed, {counts['skipped']} skipped"}


def _shell(command: list[str]) -> str:
    return " ".join(["python", *command[1:]])


def _tail(output: str | bytes | None, size: int = 3000) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else output or ""
    return text[-size:]


# ---- step B: training throughput at the seed's shape ----

def step_training(context: Context) -> dict[str, Any]:
    from models.precision import resolve

    choice = resolve("auto", context.device)
    rate = matmul_rate(context.device, choice.precision)
    runs: list[dict[str, Any]] = []
    for checkpointing in (True, False):
        for layers in context.shape.depths:
            run = _train_at_depth(context, layers, checkpointing, choice.precision, rate, runs)
            runs.append(run)
            _log(f"  {layers} layers, checkpointing {'on' if checkpointing else 'off'}: {_run_summary(run)}")
            if run["outcome"] != "measured":
                break  # a deeper model fits neither the time nor the memory
    found = {"precision": choice.precision, "precision_reason": choice.reason,
             "micro_batch": {"sequences": context.shape.sequences, "tokens": context.shape.tokens},
             "recipe": seed_recipe(context.shape, choice.precision).to_json(),
             "matmul_tflops": rate / 1e12, "runs": runs,
             "memory_measure": "torch.cuda.max_memory_allocated" if context.device == "cuda"
             else "peak resident set size of the process (VmHWM), reset before each depth"}
    projections = [p for p in (_projection(context, runs, mode) for mode in (True, False)) if p]
    if not projections:
        return found | {"outcome": "skipped", "reason": f"no depth could be measured: {runs[0]['reason']}"}
    headline = _headline(projections)
    reason = (f"{headline['tokens_per_s']:.0f} tokens/s at {SEED_LAYERS} layers ({headline['basis']}), the seed's run "
              f"in {headline['projected_hours']:.2f} h" if headline
              else f"no mode fits the device's memory at {SEED_LAYERS} layers")
    return found | {"projections": projections, "headline": headline, "reason": reason}


def _train_at_depth(context: Context, layers: int, checkpointing: bool, precision: str, rate: float,
                    earlier: list[dict[str, Any]]) -> dict[str, Any]:
    label = {"layers": layers, "gradient_checkpointing": checkpointing}
    try:
        _check_depth_fits(context, layers, checkpointing, precision, rate, earlier)
        return label | {"outcome": "measured"} | _measure_training(context, layers, checkpointing, precision)
    except Skipped as why:
        return label | {"outcome": "skipped", "reason": str(why)}
    except Exception as err:
        if not _is_out_of_memory(err):
            raise
        return label | {"outcome": "out of memory", "reason": str(err).splitlines()[0][:300]}
    finally:
        _free_memory()


def _check_depth_fits(context: Context, layers: int, checkpointing: bool, precision: str, rate: float,
                      earlier: list[dict[str, Any]]) -> None:
    """Raise Skipped when this depth's weights, its projected peak memory or its predicted time would not fit."""
    shape = context.shape
    weights_gib = weight_bytes(shape.model, layers, precision) / 2**30
    free_gib = _free_memory_gib(context.device)
    if weights_gib > 0.9 * free_gib:
        raise Skipped(f"the weights alone take {weights_gib:.1f} GiB, {free_gib:.1f} GiB free")
    measured = [r for r in earlier if r["outcome"] == "measured" and r["gradient_checkpointing"] == checkpointing]
    if len(measured) >= 2:
        peak, _ = project([(r["layers"], r["peak_memory_gib"]) for r in measured], layers)
        device_gib = _device_memory_gib(context.device)
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
    left = context.budget.left() - context.reserve_s
    if needed > left:
        raise Skipped(f"time budget: {shape.train_steps} steps need about {needed:.0f} s ({how}), "
                      f"{max(left, 0):.0f} s left for them")


def _measure_training(context: Context, layers: int, checkpointing: bool, precision: str) -> dict[str, Any]:
    """Train LoRA through ftbench's own loop (models.finetune.lora) on random weights and random tokens."""
    import torch
    from accelerate import Accelerator

    from models.finetune import lora

    shape = context.shape
    _reset_peak_memory(context.device)
    model = random_llama(shape.model, layers, precision, context.device)
    recipe = seed_recipe(shape, precision)
    clock = _StepClock(context)
    options = lora.RunOptions(checkpoint_every=0, progress=False, gradient_checkpointing=checkpointing,
                              micro_batch_size=shape.sequences, on_step=clock)
    ids = torch.randint(0, shape.model["vocab_size"], (shape.sequences * shape.train_steps, shape.tokens),
                        generator=torch.Generator().manual_seed(0)).tolist()
    examples = [{"input_ids": row, "labels": list(row)} for row in ids]  # the seed's loss: labels = input_ids
    accelerator = Accelerator(cpu=context.device == "cpu")
    peft_model = lora._setup(model, recipe, options)
    try:
        lora._fit(peft_model, examples, [], recipe, options, accelerator, pad_id=0, partial=context.out / "unused")
    finally:
        accelerator.free_memory()  # the accelerator keeps references to what it prepared
    seconds_per_step = (clock.times[-1] - clock.times[1]) / (len(clock.times) - 2)  # step 1 is warm-up
    return {"steps_timed": len(clock.times) - 2, "seconds_per_step": seconds_per_step,
            "tokens_per_s": shape.sequences * shape.tokens / seconds_per_step,
            "peak_memory_gib": _peak_memory_gib(context.device)}


def seed_recipe(shape: Shape, precision: str):
    """The seed's Code Llama recipe as measured here: full-precision base weights (bitsandbytes' 8-bit is not on the
    device machine, and bf16 is what `auto` picks on a GPU that has it), one micro-batch per optimizer step (the
    seed accumulated 16: tokens/s does not change), this shape's steps and lengths."""
    from models.finetune.recipe import SEED_CODELLAMA

    return dataclasses.replace(SEED_CODELLAMA, quantization=None, precision=precision, grad_accum=1, warmup_steps=0,
                               max_steps=shape.train_steps, batch_size=shape.sequences, max_length=shape.tokens)


class _StepClock:
    """The trainer's on_step callback: when each optimizer step ended (the device drained first), and a stop once
    the budget runs out."""

    def __init__(self, context: Context):
        self.context = context
        self.times = [time.perf_counter()]

    def __call__(self, step: int) -> None:
        _synchronize(self.context.device)
        self.times.append(time.perf_counter())
        if step < self.context.shape.train_steps and self.context.budget.left() < self.context.reserve_s:
            raise Skipped(f"time budget ran out after {step} of {self.context.shape.train_steps} steps")


def _projection(context: Context, runs: list[dict[str, Any]], checkpointing: bool) -> dict[str, Any] | None:
    """The 48-layer figures of one mode, and the seed's run priced at them; None when nothing was measured."""
    mine = [r for r in runs if r["gradient_checkpointing"] == checkpointing]
    measured = [r for r in mine if r["outcome"] == "measured"]
    if not measured:
        return None
    per_step, basis = project([(r["layers"], r["seconds_per_step"]) for r in measured])
    peak, _ = project([(r["layers"], r["peak_memory_gib"]) for r in measured])
    too_big = next((r for r in mine if r["outcome"] == "out of memory"), None)
    tokens_per_s = context.shape.sequences * context.shape.tokens / per_step
    return {"gradient_checkpointing": checkpointing, "basis": basis, "tokens_per_s": tokens_per_s,
            "peak_memory_gib": peak, "device_memory_gib": _device_memory_gib(context.device),
            "fits": too_big is None and peak <= _device_memory_gib(context.device),
            "fits_reason": f"out of memory at {too_big['layers']} layers" if too_big
            else "peak memory at 48 layers vs the device's",
            **seed_cost(tokens_per_s, _price_key(context.device))}


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

def step_decoding(context: Context) -> dict[str, Any]:
    from benchmarks.data import resolve_data
    from benchmarks.tasks import get_task
    from models.base import GenerationConfig
    from models.hf import HFModel
    from models.precision import resolve
    from models.weights import byte_level_tokenizer

    shape, tokenizer = context.shape, byte_level_tokenizer()
    precision = resolve("auto", context.device).precision
    model_shape = shape.model | {"vocab_size": len(tokenizer)}  # a byte vocabulary: every generated id decodes
    weights_gib = weight_bytes(model_shape, shape.decode_layers, precision) / 2**30
    if weights_gib > 0.9 * _free_memory_gib(context.device):
        raise Skipped(f"the weights alone take {weights_gib:.1f} GiB, {_free_memory_gib(context.device):.1f} GiB free")
    model = random_llama(model_shape, shape.decode_layers, precision, context.device,
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
    timed = {name: _timed(context.device, run) for name, run in contenders.items()}
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


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _device_memory_gib(device: str) -> float:
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


STEPS = [
    Step("A", "gpu-marked tests that need no download", step_tests),
    Step("B", "seed recipe's shape: LoRA training tokens/s, memory, projected cost", step_training, needs_s=60.0),
    Step("C", "decode tokens/s at batch 8: ftbench vs model.generate", step_decoding),
]
STEPS_BY_KEY = {step.key: step for step in STEPS}


# ---- the Markdown summary ----

def markdown(result: dict[str, Any]) -> str:
    env = result.get("environment", {})
    where = env.get("gpu") or env.get("cpu", "")
    lines = [f"# GPU check: {result['device']}, {where}", "",
             f"`{result['command']}` ({result['started']}; shape {result['shape']}; budget {result['budget_s']:.0f} s; "
             f"torch {env.get('torch')}, transformers {env.get('transformers')}, peft {env.get('peft')})", "",
             "| step | outcome | seconds | result |", "|---|---|---|---|"]
    for key, step in result["steps"].items():
        seconds = f"{step['seconds']:.0f}" if "seconds" in step else ""
        lines.append(f"| {key}: {step['title']} | {step['outcome']} | {seconds} | {_cell(step['reason'])} |")
    for key, step in result["steps"].items():
        lines += _tests_table(step) if "tests" in step else []
        lines += _training_tables(step) if "runs" in step else []
        lines += _decoding_table(step) if "generated_tokens" in step.get("ftbench", {}) else []
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _tests_table(step: dict[str, Any]) -> list[str]:
    lines = ["", "## A: gpu-marked tests", "", f"`{step['command']}`", "",
             "| test | outcome | message |", "|---|---|---|"]
    lines += [f"| {t['test']} | {t['outcome']} | {_cell(t['message'][:120])} |" for t in step["tests"]]
    return lines + [f"| {o['file']} | left out | {o['reason']} |" for o in step.get("left_out", [])]


def _training_tables(step: dict[str, Any]) -> list[str]:
    lines = ["", f"## B: LoRA training at the seed's shape ({step['precision']}, micro-batch "
                 f"{step['micro_batch']['sequences']} x {step['micro_batch']['tokens']} tokens)", "",
             f"Peak memory: {step['memory_measure']}.", "",
             "| layers | checkpointing | outcome | tokens/s | s/step | peak memory (GiB) |",
             "|---|---|---|---|---|---|"]
    for r in step["runs"]:
        numbers = (f"{r['tokens_per_s']:.0f} | {r['seconds_per_step']:.3f} | {r['peak_memory_gib']:.1f}"
                   if r["outcome"] == "measured" else f"{_cell(r['reason'])} | | ")
        mode = "on" if r["gradient_checkpointing"] else "off"
        lines.append(f"| {r['layers']} | {mode} | {r['outcome']} | {numbers} |")
    if not step.get("projections"):
        return lines
    lines += ["", f"At {SEED_LAYERS} layers: a projection unless it says measured. The seed's run is "
                  f"{SEED_RUN['steps']} steps x {SEED_RUN['sequences_per_step']} sequences x "
                  f"{SEED_RUN['tokens_per_sequence']} tokens = {SEED_TOKENS:,} tokens (an upper bound: its pairs were "
                  f"shorter and padded per batch; it ran in 8-bit fp16 on an A40, this in {step['precision']}).", "",
              "| checkpointing | basis | tokens/s | peak (GiB) | fits | hours | cost |",
              "|---|---|---|---|---|---|---|"]
    for p in step["projections"]:
        cost = (f"${p['projected_cost_usd']:.2f} at ${p['hourly_usd']}/h ({p['price_key']})"
                if p["projected_cost_usd"] is not None else f"unpriced ({p['price_key']} has no price)")
        lines.append(f"| {'on' if p['gradient_checkpointing'] else 'off'} | {p['basis']} | {p['tokens_per_s']:.0f} | "
                     f"{p['peak_memory_gib']:.1f} of {p['device_memory_gib']:.0f} | {'yes' if p['fits'] else 'no'} | "
                     f"{p['projected_hours']:.2f} | {cost} |")
    seed = step["projections"][0]["seed"]
    return lines + [f"| seed (SEED.md) | A40, 8-bit, fp16 | | | | {seed['hours']:.0f} | ${seed['cost_usd']:.2f} at "
                    f"${seed['hourly_usd']}/h |"]


def _decoding_table(step: dict[str, Any]) -> list[str]:
    model = step["model"]
    lines = ["", f"## C: decoding, batch {step['batch_size']}, {step['prompts']} prompts, {step['max_new_tokens']} new "
                 f"tokens", "", f"Random Llama: {model['num_hidden_layers']} layers, hidden {model['hidden_size']}, "
                 f"{model['num_attention_heads']} heads ({model['num_key_value_heads']} KV), intermediate "
                 f"{model['intermediate_size']}, byte vocabulary of {model['vocab_size']}, {model['precision']}.", "",
             "| decoder | tokens | seconds | tokens/s |", "|---|---|---|---|"]
    for name in ("ftbench", "transformers"):
        r = step[name]
        lines.append(f"| {name} | {r['generated_tokens']} | {r['seconds']:.2f} | {r['tokens_per_s']:.0f} |")
    return lines + ["", f"ftbench / model.generate: {step['ftbench_over_transformers']:.2f}x; same answers "
                        f"{step['same_answers']}/{step['prompts']}"]


if __name__ == "__main__":
    sys.exit(main())
