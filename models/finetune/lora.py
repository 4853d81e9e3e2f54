"""LoRA fine-tuning with peft, top to bottom: key -> (cache hit | validate -> setup -> fit -> save).

- Cached: an adapter lives under a content hash of base weights + recipe + training pairs, so a rerun reuses it and
  any change trains a new one. A damaged cache entry (a file missing or unreadable, or weights whose sha256 differs
  from the one stored at save) is detected, reported and rebuilt.
- Atomic: training writes into a temporary folder renamed into place when complete, so a killed run never leaves an
  adapter that a benchmark would pick up.
- Resumable: checkpoints (LoRA weights, optimizer, scheduler, RNG, data position) every `checkpoint_every` steps;
  rerunning the same command after a crash or `kill -9` resumes and ends with the adapter a clean run gives.
- Lean: the vocabulary head runs only where a label exists; batches are grouped by length and padding is reported.
- One code path for CPU and GPUs: `accelerate launch` runs it data-parallel (each process takes every N-th batch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models import precision, progress
from models.base import TrainingPair  # noqa: F401 (re-exported: callers build pairs from here too)
from models.errors import ConfigError
from models.finetune.recipe import LoraRecipe, validate_recipe
from models.pricing import detect_hardware
from models.weights import cache_root

TRAINER_VERSION = 2  # bump when a change to this file changes the adapters it produces
IGNORE = -100  # label id that the loss skips
# Validation loss uses at most this many held-out pairs (the first, in the split's stable order): enough for a loss
# to a few thousandths, where ViGGO's 714 would cost as much compute as a third of the training on a CPU.
MAX_VALIDATION_PAIRS = 128
WEIGHTS = "adapter_model.safetensors"
ADAPTER_FILES = ("adapter_config.json", WEIGHTS, "recipe.json", "train_info.json")


@dataclass(frozen=True)
class RunOptions:
    """How a fine-tune runs. None of it changes the adapter, so none of it is in the cache key."""

    checkpoint_every: int = 20
    """Save a resumable checkpoint every N optimizer steps (0: never)."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass. None: on for CUDA (large models), off on CPU, where micro-batches
    bound the memory instead: with frozen base weights the backward pass costs about one forward, so recomputing
    adds about half the step's compute."""
    micro_batch_size: int | None = None
    """Pairs per forward/backward pass. A batch is split into passes whose token-weighted losses add up to the
    batch's loss, so the gradient is the whole batch's (to float rounding) with a fraction of the activations.
    None: 4 on CPU without gradient checkpointing (SmolLM2, batch 8, AVX2: 1.6x the seed-style Trainer's tokens/s at
    3.1 GB peak RSS; 2 gives 2.3 GB at 1.3x), else the whole batch."""
    progress: bool = True
    """Show a progress bar."""
    cache_dir: Path | None = None
    """Adapter cache folder (default: $FTBENCH_ADAPTER_CACHE, else <ftbench cache>/adapters)."""
    on_step: Callable[[int], None] | None = field(default=None, compare=False)
    """Called after each optimizer step with the step number (tests use it to interrupt a run)."""


@dataclass(frozen=True)
class Adapter:
    """A trained LoRA adapter on disk."""

    path: Path
    key: str
    """Content hash of base + recipe + pairs (+ trainer version)."""
    info: dict[str, Any]
    """What training measured: wall time, hardware, steps, tokens, padding, losses."""
    cached: bool
    """True when this run reused an adapter instead of training."""
    recipe: LoraRecipe
    """The recipe it was trained with, precision resolved (never 'auto')."""
    weights_sha256: str
    """sha256 of adapter_model.safetensors, stored in train_info.json at save and verified on every cache hit."""


def adapter_cache() -> Path:
    """Where adapters are cached: $FTBENCH_ADAPTER_CACHE, else <ftbench cache>/adapters."""
    return Path(os.environ.get("FTBENCH_ADAPTER_CACHE") or cache_root() / "adapters")


def adapter_key(base_fingerprint: dict[str, Any], recipe: LoraRecipe, pairs: Sequence[TrainingPair],
                validation: Sequence[TrainingPair] = ()) -> str:
    """sha256 over everything that decides the adapter's weights (validation pairs only matter for early stopping)."""
    digest = hashlib.sha256()
    identity = {"base": base_fingerprint, "recipe": recipe.to_json(), "trainer": TRAINER_VERSION}
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch / torchrun
    if processes > 1:  # each process takes its own batches: the effective batch grows with the process count
        identity["processes"] = processes
    digest.update(json.dumps(identity, sort_keys=True).encode())
    for pair in pairs:
        digest.update(json.dumps([pair.prompt, pair.completion]).encode())
    if recipe.early_stopping_patience:
        digest.update(b"validation")
        for pair in validation:
            digest.update(json.dumps([pair.prompt, pair.completion]).encode())
    return digest.hexdigest()


def finetune(
    load_base: Callable[..., tuple[Any, Any, dict[str, Any]]],
    base_fingerprint: dict[str, Any],
    pairs: Sequence[TrainingPair],
    recipe: LoraRecipe,
    *,
    validation: Sequence[TrainingPair] = (),
    module_names: Sequence[str] | None = None,
    options: RunOptions = RunOptions(),
) -> Adapter:
    """The adapter for (base, recipe, pairs): from the cache, or trained now (resuming a checkpoint if one exists).

    precision='auto' is resolved for this machine first, so the key, the saved recipe and the record hold what was
    computed (bf16 and fp32 adapters never share a cache entry)."""
    if not pairs:
        raise ConfigError("no training pairs: the task's train split is empty; check --data and the train file.")
    validate_recipe(recipe, module_names=module_names, cuda=torch.cuda.is_available())
    choice = precision.resolve(recipe.precision, "cuda" if torch.cuda.is_available() else "cpu")
    recipe = dataclasses.replace(recipe, precision=choice.precision)
    if recipe.eval_every and not validation:
        raise ConfigError("the recipe sets eval_every but the task gave no validation pairs")
    validation = validation[:MAX_VALIDATION_PAIRS]
    key = adapter_key(base_fingerprint, recipe, pairs, validation)
    target = (options.cache_dir or adapter_cache()) / key[:24]
    cached = _load_cached(target, key, recipe)
    if cached is not None:
        return cached

    if options.progress:
        progress.announce(f"training a LoRA adapter on {len(pairs)} pairs (none cached under {target}); "
                          f"precision {choice.precision} ({choice.reason})")
    if warning := precision.emulation_warning(choice):
        progress.warn(warning)
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model, tokenizer, _ = load_base(quantization=recipe.quantization) if recipe.quantization else load_base()
    model = _setup(model, recipe, options)
    examples, truncated = _tokenize(tokenizer, pairs, recipe)
    held_out, _ = _tokenize(tokenizer, validation, recipe) if validation else ([], 0)
    partial = target.parent / f".partial-{target.name}"
    info = _fit(model, examples, held_out, recipe, options, accelerator, pad_id=_pad_id(tokenizer), partial=partial)
    info.update(key=key, base=base_fingerprint, pairs=len(pairs), validation_pairs=len(validation),
                truncated_pairs=truncated)
    if accelerator.is_main_process:
        _save(accelerator.unwrap_model(model), recipe, info, target)
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    # Read back what is published (on every process; after a lost race, the other writer's adapter).
    return _published(target, key, recipe, cached=False)


def _load_cached(target: Path, key: str, recipe: LoraRecipe) -> Adapter | None:
    """A complete, verified cache entry, else None; a damaged one is reported and removed so it gets rebuilt."""
    if not target.exists():
        return None
    problem = _cache_problem(target, key)
    if problem is None:
        return _published(target, key, recipe, cached=True)
    print(f"ftbench: adapter cache entry {target} is unusable ({problem}); rebuilding it.", file=sys.stderr)
    shutil.rmtree(target, ignore_errors=True)
    return None


def _published(target: Path, key: str, recipe: LoraRecipe, *, cached: bool) -> Adapter:
    info = json.loads((target / "train_info.json").read_text())
    return Adapter(target, key, info, cached=cached, recipe=recipe, weights_sha256=info["weights_sha256"])


def _cache_problem(target: Path, key: str) -> str | None:
    """Why the entry at `target` cannot be used, or None."""
    missing = [name for name in ADAPTER_FILES if not (target / name).is_file()]
    if missing:
        return f"missing {missing}"
    try:
        info = json.loads((target / "train_info.json").read_text())
        from safetensors import safe_open

        with safe_open(str(target / WEIGHTS), framework="pt") as weights:
            if not list(weights.keys()):
                return f"{WEIGHTS} holds no tensors"
    except Exception as err:  # any parse failure means the entry cannot be trusted
        return f"{type(err).__name__}: {err}"
    if not isinstance(info, dict):
        return "train_info.json is not a JSON object"
    if info.get("key") != key:
        return "train_info.json belongs to another key"
    return _checksum_problem(target, info)


def _checksum_problem(target: Path, info: dict[str, Any]) -> str | None:
    """A mismatch between the weights and the sha256 stored at save, or None.

    Tensor bytes can change with the header intact (a bad copy, bit rot, tampering); safetensors still loads such a
    file and the adapter answers garbage, so only a checksum tells. An entry saved before checksums were stored
    cannot be verified, so it is rebuilt too."""
    expected = info.get("weights_sha256")
    if not expected:
        return f"train_info.json has no weights_sha256 (saved before adapters were checksummed): {WEIGHTS} cannot be verified"
    actual = weights_sha256(target)
    if actual != expected:
        return (f"{WEIGHTS} fails its checksum: sha256 {actual[:16]}... on disk, {expected[:16]}... recorded in "
                f"train_info.json at save; the weights changed after training")
    return None


def weights_sha256(folder: Path) -> str:
    """sha256 of the adapter's weights file (milliseconds for the few MB of a LoRA adapter)."""
    with open(folder / WEIGHTS, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def memory_plan(options: RunOptions, recipe: LoraRecipe, cuda: bool) -> tuple[bool, int]:
    """(gradient checkpointing, micro-batch size) for this run; explicit options win over the device defaults.

    >>> memory_plan(RunOptions(), LoraRecipe(batch_size=8), cuda=False)
    (False, 4)
    >>> memory_plan(RunOptions(), LoraRecipe(batch_size=8), cuda=True)
    (True, 8)
    """
    checkpointing = cuda if options.gradient_checkpointing is None else options.gradient_checkpointing
    micro = options.micro_batch_size or (4 if not cuda and not checkpointing else recipe.batch_size)
    if micro < 1:
        raise ConfigError(f"micro_batch_size must be >= 1, got {micro}")
    return checkpointing, min(micro, recipe.batch_size)


def _setup(model, recipe: LoraRecipe, options: RunOptions):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    torch.manual_seed(recipe.seed)
    checkpointing, _ = memory_plan(options, recipe, torch.cuda.is_available())
    if recipe.quantization:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 renamed the method
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    config = LoraConfig(r=recipe.r, lora_alpha=recipe.alpha, lora_dropout=recipe.dropout,
                        target_modules=list(recipe.target_modules), bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def _tokenize(tokenizer, pairs: Sequence[TrainingPair], recipe: LoraRecipe) -> tuple[list[dict[str, list[int]]], int]:
    """input_ids and labels per pair, and how many pairs were cut to max_length.

    The prompt is tokenized alone, exactly as at evaluation time, then the answer and EOS are appended.
    A pair cut so short that no labelled token is left teaches nothing and is dropped.
    """
    examples, truncated = [], 0
    for pair in pairs:
        prompt_ids = tokenizer(pair.prompt).input_ids
        answer_ids = tokenizer(pair.completion, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        ids = (prompt_ids + answer_ids)[: recipe.max_length]
        truncated += len(prompt_ids) + len(answer_ids) > recipe.max_length
        labels = (list(ids) if recipe.loss_on_prompt else [IGNORE] * len(prompt_ids) + answer_ids)[: len(ids)]
        if any(label != IGNORE for label in labels[1:]):
            examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        raise ConfigError(f"every training pair is longer than max_length={recipe.max_length} tokens before its "
                          f"answer starts; raise max_length in the recipe.")
    return examples, truncated


@dataclass
class _TrainState:
    """Everything a checkpoint must restore besides weights and optimizer (JSON-able)."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    real_tokens: int = 0
    padded_tokens: int = 0
    elapsed_s: float = 0.0
    validation: list[dict[str, float]] = field(default_factory=list)
    best_loss: float | None = None
    best_step: int | None = None
    bad_checks: int = 0
    resumed_from: list[int] = field(default_factory=list)


def _fit(model, examples, held_out, recipe: LoraRecipe, options: RunOptions, accelerator, *, pad_id: int,
         partial: Path) -> dict[str, Any]:
    from transformers import get_linear_schedule_with_warmup

    world = accelerator.num_processes
    per_step = recipe.batch_size * recipe.grad_accum * world
    total_steps = max(1, min(recipe.max_steps, math.ceil(recipe.epochs * len(examples) / per_step)))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    schedule = get_linear_schedule_with_warmup(optimizer, min(recipe.warmup_steps, total_steps - 1), total_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    state, best_weights = _resume(partial, model, optimizer, schedule)
    batches = _batches(examples, recipe, rank=accelerator.process_index, world=world)
    for _ in range(state.step * recipe.grad_accum):  # same data order as an uninterrupted run
        next(batches)

    autocast = _autocast(recipe, accelerator.device)
    checkpointing, micro = memory_plan(options, recipe, accelerator.device.type == "cuda")
    started = time.perf_counter() - state.elapsed_s
    bar = progress.Phase(f"LoRA training ({recipe.precision})", total_steps, "step", initial=state.step,
                         enabled=options.progress and accelerator.is_main_process)
    model.train()
    try:
        while state.step < total_steps:
            step_loss = _optimizer_step(model, optimizer, schedule, batches, recipe, accelerator, autocast, pad_id,
                                        state, params, micro)
            state.step += 1
            state.losses.append(step_loss)
            state.elapsed_s = time.perf_counter() - started
            bar.update(1, loss=f"{step_loss:.3f}", tok_s=f"{state.real_tokens / max(state.elapsed_s, 1e-9):.0f}")
            if held_out and (state.step == total_steps or (recipe.eval_every and state.step % recipe.eval_every == 0)):
                best_weights = _check_validation(model, held_out, micro, autocast, pad_id, state, best_weights)
                if recipe.early_stopping_patience and state.bad_checks >= recipe.early_stopping_patience:
                    break
            state.elapsed_s = time.perf_counter() - started
            if options.checkpoint_every and state.step % options.checkpoint_every == 0 and state.step < total_steps:
                if accelerator.is_main_process:
                    _checkpoint(partial, accelerator.unwrap_model(model), optimizer, schedule, state, best_weights)
            if options.on_step:
                options.on_step(state.step)
    except (torch.OutOfMemoryError, MemoryError) as err:
        raise ConfigError(
            f"out of memory at batch_size={recipe.batch_size}, max_length={recipe.max_length}: lower batch_size "
            f"(raise grad_accum to keep the effective batch of {recipe.effective_batch}), lower max_length, run with "
            f"gradient checkpointing, or on a GPU use quantization='4bit'. ({err})"
        ) from err
    finally:
        bar.close()
    model.eval()
    if recipe.early_stopping_patience and best_weights is not None:
        _set_lora_weights(accelerator.unwrap_model(model), best_weights)
    return _training_info(state, recipe, total_steps, len(examples), world) | {
        "gradient_checkpointing": checkpointing, "micro_batch_size": micro}


def _optimizer_step(model, optimizer, schedule, batches, recipe, accelerator, autocast, pad_id, state, params,
                    micro: int) -> float:
    """One optimizer step over grad_accum batches, each run as passes of `micro` pairs (padded per pass).

    A pass's loss is its summed token loss over the whole batch's labelled-token count, so the passes add up to
    the batch's mean loss and their gradients to the batch's gradient."""
    step_loss = 0.0
    for accum in range(recipe.grad_accum):
        batch = next(batches)
        labelled = sum(_labelled_tokens(example) for example in batch)
        passes = [batch[i : i + micro] for i in range(0, len(batch), micro)]
        for index, pairs in enumerate(passes):
            tensors = {k: v.to(accelerator.device) for k, v in _collate(pairs, pad_id).items()}
            sync = accum == recipe.grad_accum - 1 and index == len(passes) - 1  # DDP: all-reduce once per step
            with (contextlib.nullcontext() if sync else accelerator.no_sync(model)), autocast:
                loss = completion_loss(model, **tensors, reduction="sum") / (labelled * recipe.grad_accum)
            accelerator.backward(loss)
            step_loss += loss.item()
            state.real_tokens += int(tensors["attention_mask"].sum())
            state.padded_tokens += tensors["attention_mask"].numel()
    accelerator.clip_grad_norm_(params, 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(step_loss):
        raise FloatingPointError(f"training loss is not finite at step {state.step + 1} ({step_loss}); "
                                 f"lower learning_rate in the recipe (now {recipe.learning_rate}).")
    return step_loss


def _check_validation(model, held_out, batch_size: int, autocast, pad_id, state: _TrainState, best_weights):
    """Record the validation loss; keep a copy of the LoRA weights whenever it improves."""
    loss = validation_loss(model, held_out, batch_size, pad_id, autocast)
    state.validation.append({"step": state.step, "loss": loss})
    if state.best_loss is None or loss < state.best_loss:
        state.best_loss, state.best_step, state.bad_checks = loss, state.step, 0
        return _lora_weights(model)
    state.bad_checks += 1
    return best_weights


@torch.no_grad()
def validation_loss(model, examples, batch_size: int, pad_id: int, autocast=contextlib.nullcontext()) -> float:
    """Mean per-token loss on held-out pairs (the same loss as training)."""
    was_training = model.training
    model.eval()
    total = tokens = 0.0
    device = next(model.parameters()).device
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in _collate(examples[start : start + batch_size], pad_id).items()}
        labelled = int((batch["labels"][:, 1:] != IGNORE).sum())
        with autocast:
            total += float(completion_loss(model, **batch)) * labelled
        tokens += labelled
    model.train(was_training)
    return total / max(tokens, 1)


def _labelled_tokens(example: dict[str, list[int]]) -> int:
    """Positions whose next token is scored (the loss shifts labels by one)."""
    return sum(label != IGNORE for label in example["labels"][1:])


def completion_loss(model, input_ids, attention_mask, labels, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy ('mean' or 'sum' over labelled tokens), the vocabulary head applied only where a
    label exists.

    The 49k-entry output layer is a large share of compute and memory; on a completion-only loss most positions
    are prompt, so projecting just the labelled hidden states saves both.
    """
    causal_lm = _causal_lm(model)
    decoder = causal_lm.get_decoder()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep])
    return F.cross_entropy(logits.float(), targets[keep], reduction=reduction)


def _causal_lm(model):
    """The transformers CausalLM inside DDP and peft wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _autocast(recipe: LoraRecipe, device: torch.device):
    if recipe.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if recipe.precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _batches(examples: list[dict[str, list[int]]], recipe: LoraRecipe, *, rank: int = 0,
             world: int = 1) -> Iterator[list[dict[str, list[int]]]]:
    """Endless batches, grouped by length within shuffled windows (little padding, still random order).

    The order depends only on the seed and the epoch, so a resumed run can skip to where it stopped; with several
    processes, process `rank` takes every `world`-th batch.
    """
    window = recipe.batch_size * 16
    for epoch in range(sys.maxsize):
        rng = random.Random(recipe.seed * 1_000_003 + epoch)
        order = list(range(len(examples)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: -len(examples[i]["input_ids"]))
            batches += [chunk[i : i + recipe.batch_size] for i in range(0, len(chunk), recipe.batch_size)]
        rng.shuffle(batches)
        batches += batches[: (-len(batches)) % world]  # every process gets the same number of batches
        for batch in batches[rank::world]:
            yield [examples[i] for i in batch]
    raise AssertionError("unreachable")


def _collate(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the batch's longest pair, rounded up to a multiple of 8."""
    width = -(-max(len(e["input_ids"]) for e in batch) // 8) * 8
    ids = torch.full((len(batch), width), pad_id)
    labels = torch.full((len(batch), width), IGNORE)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, example in enumerate(batch):
        n = len(example["input_ids"])
        ids[row, :n] = torch.tensor(example["input_ids"])
        labels[row, :n] = torch.tensor(example["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _lora_weights(model) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone().cpu() for k, v in get_peft_model_state_dict(_peft(model)).items()}


def _set_lora_weights(model, weights: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(_peft(model), weights)


def _peft(model):
    return getattr(model, "module", model)


def _checkpoint(partial: Path, model, optimizer, schedule, state: _TrainState, best_weights) -> None:
    """Write `ckpt-<step>` atomically (temp folder, then rename), then drop older checkpoints.

    A folder of several files, so not models/files.py (which replaces one file): renaming the whole staged folder
    is what makes the checkpoint appear complete or not at all.
    """
    from safetensors.torch import save_file

    partial.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-ckpt-", dir=partial))
    save_file(_lora_weights(model), str(staging / "lora.safetensors"))
    if best_weights is not None:
        save_file(best_weights, str(staging / "best.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
               staging / "optimizer.pt")
    (staging / "progress.json").write_text(json.dumps(state.__dict__))
    final = partial / f"ckpt-{state.step:06d}"
    staging.rename(final)
    for old in partial.glob("ckpt-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)


def _resume(partial: Path, model, optimizer, schedule) -> tuple[_TrainState, dict[str, torch.Tensor] | None]:
    """Restore the newest complete checkpoint, if any (a half-written one is a .tmp folder and is ignored)."""
    from safetensors.torch import load_file

    checkpoints = sorted(p for p in partial.glob("ckpt-*") if (p / "progress.json").is_file())
    if not checkpoints:
        return _TrainState(), None
    latest = checkpoints[-1]
    try:
        state = _TrainState(**json.loads((latest / "progress.json").read_text()))
        _set_lora_weights(model, load_file(str(latest / "lora.safetensors")))
        saved = torch.load(latest / "optimizer.pt", weights_only=False)
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["rng"])
        if saved.get("cuda_rng") is not None:  # LoRA dropout on GPU draws from the CUDA generators
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        best = load_file(str(latest / "best.safetensors")) if (latest / "best.safetensors").exists() else None
    except Exception as err:  # a damaged checkpoint: start over rather than train from a wrong state
        print(f"ftbench: checkpoint {latest} is unusable ({type(err).__name__}: {err}); training from the start.",
              file=sys.stderr)
        shutil.rmtree(partial, ignore_errors=True)
        return _TrainState(), None
    state.resumed_from.append(state.step)
    print(f"ftbench: resuming LoRA training from step {state.step} ({latest}).", file=sys.stderr)
    return state, best


def _training_info(state: _TrainState, recipe: LoraRecipe, total_steps: int, n_examples: int, world: int) -> dict[str, Any]:
    hardware = detect_hardware()
    seen = state.step * recipe.batch_size * recipe.grad_accum * world
    return {
        "wall_s": state.elapsed_s, "steps": state.step, "planned_steps": total_steps,
        "stopped_early": state.step < total_steps, "processes": world, "examples_seen": seen,
        "epochs": seen / n_examples, "real_tokens": state.real_tokens,
        "padding_fraction": 1 - state.real_tokens / max(state.padded_tokens, 1),
        "real_tokens_per_s": state.real_tokens / state.elapsed_s if state.elapsed_s else None,
        "loss_first": state.losses[0], "loss_last": state.losses[-1],
        "loss_curve": [round(x, 4) for x in state.losses], "validation": state.validation,
        "best_step": state.best_step, "resumed_from": state.resumed_from, "precision": recipe.precision,
        "hardware": hardware.to_json(),  # key, description, devices per process: priced x processes
    }


def _save(peft_model, recipe: LoraRecipe, info: dict[str, Any], target: Path) -> None:
    # A staged folder renamed into place, not models/files.py: os.replace cannot swap a folder over an existing one,
    # and rename failing on an existing target is how a process that lost the race to another one finds out.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        peft_model.save_pretrained(staging)
        (staging / "recipe.json").write_text(json.dumps(recipe.to_json(), indent=2))
        info = info | {"weights_sha256": weights_sha256(staging)}  # of the bytes written, checked on every load
        (staging / "train_info.json").write_text(json.dumps(info, indent=2))  # written last: marks completeness
        staging.chmod(0o755)  # mkdtemp makes it private; a shared cache must be readable
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "train_info.json").exists():
            raise
