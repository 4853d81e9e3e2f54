"""Task registry: built-in tasks by name, plus the user's JSONL task when a folder is given."""

from __future__ import annotations

from pathlib import Path

from benchmarks.tasks.base import Example, Score, Task, TrainingSplit, chat_rows, training_pairs, training_split
from benchmarks.tasks.spider import SpiderTask
from benchmarks.tasks.viggo import ViggoTask
from models.errors import UnknownNameError

BUILTIN = {"spider": SpiderTask, "viggo": ViggoTask}

__all__ = ["BUILTIN", "Example", "Score", "Task", "TrainingSplit", "chat_rows", "get_task", "training_pairs",
           "training_split"]


def get_task(name: str, *, jsonl_folder: Path | None = None, jsonl_scorer: str = "exact") -> Task:
    """A task by name; 'jsonl' needs the folder of the user's train.jsonl and eval.jsonl."""
    if name == "jsonl" and jsonl_folder is not None:
        from benchmarks.tasks.jsonl import JsonlTask

        return JsonlTask(jsonl_folder, jsonl_scorer)
    if name not in BUILTIN:
        known = list(BUILTIN) + (["jsonl"] if jsonl_folder else [])
        raise UnknownNameError("task", name, known + ["jsonl (with --jsonl FOLDER)"] if not jsonl_folder else known)
    return BUILTIN[name]()
