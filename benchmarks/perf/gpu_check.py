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

This module runs the steps (step A itself; B and C are measured in benchmarks.perf.seed_shape) and writes the
results. Every step ends passed, failed or skipped with its reason, and a failing step never stops the others. A time
budget is checked between steps and between depths: what no longer fits is skipped and says so. DIR/gpu_check.json
and DIR/gpu_check.md are rewritten atomically after every step, so a run killed from outside keeps what it did.
--tiny swaps in a 2-layer model that runs in seconds on a CPU (the unit suite runs it). Exit status: 1 when a step
failed, else 0. See docs/gpu-check.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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

from benchmarks.perf import seed_shape
from benchmarks.perf.seed_shape import SEED_LAYERS, SEED_RUN, SEED_SHAPE, SEED_TOKENS, TINY_SHAPE, Shape, Skipped
from benchmarks.record import nonfinite_to_null
from models.files import write_atomic

ROOT = Path(__file__).resolve().parents[2]
NEEDS_DOWNLOAD = {"tests/test_vllm.py": "vLLM and the SmolLM2 weights from the hub"}
"""gpu-marked test files that step A leaves out, and what they would fetch (the device machine has no network)."""
TESTS_TIMEOUT_S = 240.0
TESTS_ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                     "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
"""Step A's pytest: offline, and with cuBLAS set up for deterministic results before it starts (the LoRA resume test
turns torch's deterministic algorithms on, and they refuse cuBLAS without this setting)."""
OUTCOME_OF_TAG = {"failure": "failed", "error": "error", "skipped": "skipped"}


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

    def time_for_step(self) -> float:
        """Seconds the current step may still use."""
        return self.budget.left() - self.reserve_s

    def setting(self) -> seed_shape.Setting:
        """What the measurements of steps B and C need to know."""
        return seed_shape.Setting(self.device, self.shape, self.time_for_step)


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
        seed_shape.log(f"step {step.key}: {step.title} ({context.budget.left():.0f} s of budget left)")
        result["steps"][step.key] = {"title": step.title} | _run_step(step, context)
        write_results(context.out, result)
        seed_shape.log(f"step {step.key}: {result['steps'][step.key]['outcome']} {result['steps'][step.key]['reason']}")
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
        seed_shape.free_memory()
    return {"outcome": outcome, "reason": reason, "seconds": time.monotonic() - started} | found


def write_results(out: Path, result: dict[str, Any]) -> None:
    """gpu_check.json (strict JSON: a non-finite number becomes null) and gpu_check.md, each written whole."""
    out.mkdir(parents=True, exist_ok=True)
    strict, _ = nonfinite_to_null(result)
    write_atomic(out / "gpu_check.json", json.dumps(strict, indent=2, allow_nan=False) + "\n")
    write_atomic(out / "gpu_check.md", markdown(result))


def _environment(device: str) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    from models.precision import cpu_description

    found = {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
             "peft": peft.__version__, "cpu": f"{cpu_description()}, {os.cpu_count()} cores"}
    if device == "cuda":
        found |= {"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": seed_shape.device_memory_gib("cuda")}
    return found


# ---- the steps: A here, B and C measured in benchmarks.perf.seed_shape ----

def step_tests(context: Context) -> dict[str, Any]:
    files = [path for path in gpu_test_files() if path not in NEEDS_DOWNLOAD]
    left_out = [{"file": path, "reason": f"needs {what}"} for path, what in NEEDS_DOWNLOAD.items()]
    if not files:
        raise Skipped(f"no gpu-marked test file besides {sorted(NEEDS_DOWNLOAD)}")
    cuda = context.device == "cuda"
    # At least the step's minimum, even when that eats into the later steps' share; at most TESTS_TIMEOUT_S.
    timeout = min(TESTS_TIMEOUT_S, max(STEPS_BY_KEY["A"].needs_s, context.time_for_step()))
    with tempfile.TemporaryDirectory() as folder:
        junit = Path(folder) / "junit.xml"
        command = [sys.executable, "-m", "pytest", *files, "-m", "gpu", "-q", "-p", "no:cacheprovider",
                   f"--junitxml={junit}", *(["--run-gpu"] if cuda else [])]
        try:
            done = subprocess.run(command, cwd=ROOT, env=os.environ | TESTS_ENVIRONMENT, capture_output=True,
                                  text=True, timeout=timeout)
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


def step_training(context: Context) -> dict[str, Any]:
    return seed_shape.training(context.setting())


def step_decoding(context: Context) -> dict[str, Any]:
    return seed_shape.decoding(context.setting())


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
