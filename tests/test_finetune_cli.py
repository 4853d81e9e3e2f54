"""`ftbench finetune` as a user runs it: a real process, killed with SIGKILL mid-training, then rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from benchmarks.cli import main

ARGS = ["finetune", "--task", "spider", "--model", "tiny-random-lora", "--set", "max_steps=24", "--set", "batch_size=2",
        "--checkpoint-every", "2"]


def finetune_process(env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.cli", *ARGS], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def adapter_weights(cache):
    (adapter,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    return load_file(str(adapter / "adapter_model.safetensors")), json.loads((adapter / "train_info.json").read_text())


def test_kill_9_then_rerun_resumes_and_matches_a_clean_run(tmp_path):
    env = os.environ | {"FTBENCH_ADAPTER_CACHE": str(tmp_path / "killed")}
    process = finetune_process(env)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "killed").glob(".partial-*/ckpt-*")):  # wait for the first checkpoint
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [p for p in (tmp_path / "killed").iterdir() if not p.name.startswith(".")] == [], "no adapter published"

    rerun = finetune_process(env)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resuming LoRA training from step" in err
    resumed, info = adapter_weights(tmp_path / "killed")
    assert info["resumed_from"] and info["steps"] == 24

    clean_env = os.environ | {"FTBENCH_ADAPTER_CACHE": str(tmp_path / "clean")}
    assert subprocess.run([sys.executable, "-m", "benchmarks.cli", *ARGS], env=clean_env, capture_output=True).returncode == 0
    clean, _ = adapter_weights(tmp_path / "clean")
    import torch

    assert clean.keys() == resumed.keys() and all(torch.equal(clean[k], resumed[k]) for k in clean)


def test_finetune_refuses_a_base_model_with_the_choices(capsys):
    assert main(["finetune", "--task", "spider", "--model", "smollm2-135m"]) == 2
    assert "is not a fine-tuned entry; choose one of" in capsys.readouterr().err


def test_invalid_recipe_override_names_the_value(capsys):
    code = main(["finetune", "--task", "spider", "--model", "tiny-random-lora", "--set", "r=0"])
    assert code == 2 and "r = 0: must be an integer >= 1" in capsys.readouterr().err


def test_recipe_problems_for_this_model_and_machine_are_listed_together(capsys):
    code = main(["finetune", "--task", "spider", "--model", "tiny-random-lora", "--set", "quantization=8bit",
                 "--set", "target_modules=[\"nope\"]"])
    err = capsys.readouterr().err
    assert code == 2
    for problem in ["needs a CUDA GPU", "target_modules ['nope'] are not in the model"]:
        assert problem in err


def test_data_parallel_under_torchrun_trains_one_adapter_for_two_processes(tmp_path):
    """The accelerate path with two CPU processes (gloo): what `accelerate launch` does on several GPUs."""
    env = os.environ | {"FTBENCH_ADAPTER_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "benchmarks.cli",
                           "finetune", "--task", "spider", "--model", "tiny-random-lora", "--set", "max_steps=3"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads(done.stdout)  # only rank 0 reports
    assert info["processes"] == 2 and info["examples_seen"] == 3 * 4 * 2
    _, saved = adapter_weights(tmp_path)
    assert saved["processes"] == 2


def test_options_reach_the_settings_and_the_recipe_file_is_applied_once(tmp_path, monkeypatch):
    """--recipe then --set build the entry's recipe; the Settings must not carry the file too, or the backend would
    apply it again over --set. The shared options arrive in the Settings as pytest would build them."""
    import benchmarks.runner

    seen = {}

    def prepare(entry, task, settings):
        seen.update(entry=entry, settings=settings)
        return benchmarks.runner.PreparedModel(None, {})

    monkeypatch.setattr(benchmarks.runner, "prepare_model", prepare)
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"r": 4, "alpha": 8}))
    assert main(["finetune", "--task", "spider", "--model", "tiny-random-lora", "--recipe", str(recipe), "--set", "r=2",
                 "--max-cost", "$1.5", "--openai-timeout", "9", "--checkpoint-every", "0"]) == 0
    settings = seen["settings"]
    assert (seen["entry"].recipe.r, seen["entry"].recipe.alpha) == (2, 8)
    assert settings.train.recipe_file is None and settings.train.checkpoint_every == 0
    assert (settings.max_cost_usd, settings.openai.timeout_s, settings.allow_paid) == (1.5, 9.0, False)
