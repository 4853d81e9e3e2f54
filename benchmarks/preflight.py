"""Checks that run before any model loads, so bad input costs seconds, not a training run or a paid job.

`problems(pairs, settings, tasks, thresholds_file)` reads every data split the selected pairs will use, the
thresholds file, the cache folders they will write, and each prompt's length against the model's context, and returns
every problem found, each naming its file, row or field and the fix. pytest's session turns a non-empty list into a
usage error (exit 4) before the first test runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from benchmarks import thresholds
from benchmarks.runner import Settings, eval_examples, generation_config
from benchmarks.tasks import Example, Task, training_split
from models import catalog
from models.backends import backend_for
from models.errors import FtbenchError

Pair = tuple[str, str]


def problems(pairs: Iterable[Pair], settings: Settings, task_for: Callable[[str], Task],
             thresholds_file: Path) -> list[str]:
    """Every problem of the inputs of these (task, model) pairs; empty when they can run."""
    pairs = sorted(set(pairs))
    found = [f"thresholds {thresholds_file}: {p}; fix it or pass another file with --thresholds"
             for p in thresholds.check(thresholds_file)]
    tasks: dict[str, Task] = {}
    for name in sorted({task for task, _ in pairs}):
        try:
            tasks[name] = task_for(name)
        except FtbenchError as err:
            found.append(str(err))
    entries = {model: catalog.get(model) for _, model in pairs}
    readable: dict[str, list[Example]] = {}  # eval rows of the tasks whose splits all read well
    for name, task in tasks.items():
        tuned = [m for t, m in pairs if t == name and entries[m].finetuned]
        rows, problem = _read_splits(task, settings, needs_training=bool(tuned))
        if problem:
            found.append(problem)
        else:
            readable[name] = rows
    found += _cache_problems(entries.values(), settings)
    found += _context_problems([(tasks[t], entries[m]) for t, m in pairs if t in readable], readable, settings)
    return found


def _read_splits(task: Task, settings: Settings, needs_training: bool) -> tuple[list[Example], str | None]:
    """(eval rows, None), or the problem: every split the run reads parses (the loaders name file and row) and is
    not empty."""
    try:
        rows = eval_examples(task, settings)
        if not rows:
            return rows, (f"{task.name}: the {task.eval_split} split has no rows in {settings.data.label}; "
                          f"there is nothing to evaluate")
        if needs_training and not training_split(task, settings.data).train:
            return rows, (f"{task.name}: the {task.train_split} split has no rows in {settings.data.label}; "
                          f"a fine-tuned model needs training pairs")
    except FtbenchError as err:
        return [], str(err)
    return rows, None


def _cache_problems(entries: Iterable, settings: Settings) -> list[str]:
    """The cache folders this run will write are writable (else the run would fail after training)."""
    from models.prediction_cache import prediction_cache_dir

    entries = list(entries)
    folders = {}
    if settings.prediction_cache:
        folders[prediction_cache_dir()] = "FTBENCH_PREDICTION_CACHE (or --no-prediction-cache)"
    by_backend: dict[str, list] = {}
    for entry in entries:
        by_backend.setdefault(entry.backend, []).append(entry)
    for group in by_backend.values():
        folders |= backend_for(group[0]).cache_folders(group)
    return [f"cache folder {folder} is not writable ({why}); point {variable} or FTBENCH_CACHE at a writable folder"
            for folder, variable in folders.items() if (why := _unwritable(folder))]


def _unwritable(folder: Path) -> str | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".ftbench-write-check-"):
            return None
    except OSError as err:
        return err.strerror or str(err)


def _context_problems(pairs: list, rows: dict[str, list[Example]], settings: Settings) -> list[str]:
    """Each prompt of a local model, plus --max-new-tokens, fits the model's context (checked once per weights)."""
    models: dict[tuple[str, str], list[str]] = {}
    tasks = {}
    for task, entry in pairs:
        if backend_for(entry).runs_here(entry):
            models.setdefault((task.name, entry.weights), []).append(entry.name)
            tasks[task.name] = task
    found = []
    for (task_name, weights), names in models.items():
        limits = _limits(weights)
        if limits is None or limits[1] is None:
            continue
        tokenizer, context = limits
        task = tasks[task_name]
        room = context - generation_config(task, settings).max_new_tokens
        for example in rows[task_name]:
            tokens = _tokens_beyond(tokenizer, task.prompt(example).text, room)
            if tokens:
                found.append(f"{task_name} row {example.id}: the prompt is {tokens:,}+ tokens; with --max-new-tokens "
                             f"{context - room} it exceeds the context of {', '.join(names)} ({context:,} tokens). "
                             f"Shorten or remove the row, or lower --max-new-tokens")
    return found


def _tokens_beyond(tokenizer, text: str, room: int) -> int | None:
    """The prompt's token count when over `room`, else None; a huge row is judged on a prefix, so a 5 MB line costs
    milliseconds."""
    data = text.encode()
    if len(data) + 2 <= room:  # a token covers at least one byte: no need to count
        return None
    prefix = data[: 32 * (room + 1)].decode(errors="ignore")
    tokens = len(tokenizer(prefix)["input_ids"])
    if tokens <= room and len(prefix) < len(text):
        tokens = len(tokenizer(text)["input_ids"])
    return tokens if tokens > room else None


_LIMITS: dict[str, tuple | None] = {}


def _limits(weights: str):
    if weights not in _LIMITS:
        from models.weights import tokenizer_and_context

        _LIMITS[weights] = tokenizer_and_context(weights)
    return _LIMITS[weights]
