"""A user's own task: `train.jsonl` and `eval.jsonl` in one folder, in either of OpenAI's fine-tuning formats.

    {"prompt": "...", "completion": "..."}                               prompt/completion rows
    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}]}   chat rows

For chat rows the last assistant turn is the target; local models see the other turns joined as plain text
(`render_chat_text`), chat APIs see the turns. Scorers: 'exact' (whitespace-normalized), 'sql', 'mr'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.metrics import mr
from benchmarks.tasks.base import Example, Score
from benchmarks.tasks.scorers import SCORERS
from benchmarks.data import DataSource
from models.base import Message, Prompt
from models.errors import DataError, UnknownNameError

SPLITS = {"train": "train.jsonl", "eval": "eval.jsonl"}


class JsonlTask:
    train_split = "train"
    eval_split = "eval"
    validation_split = None

    def __init__(self, folder: Path, scorer: str = "exact", name: str = "jsonl"):
        if scorer not in SCORERS:
            raise UnknownNameError("scorer", scorer, SCORERS)
        self.folder, self.scorer, self.name = Path(folder), scorer, name
        self.metrics = SCORERS[scorer].metrics
        self.headline = self.metrics[0]
        eval_path = self.folder / SPLITS["eval"]
        if not eval_path.is_file():
            raise DataError(f"JSONL task folder {self.folder} has no {SPLITS['eval']}; it needs train.jsonl and eval.jsonl.")
        # Keep the seed's "first line only" unless some answer legitimately spans lines.
        self.stop = () if any("\n" in e.target for e in self.examples(None, "eval")) else ("\n",)

    def examples(self, data: DataSource | None, split: str) -> list[Example]:
        """Rows of `split` ('train' or 'eval'); `data` is ignored: the folder is the source."""
        if split not in SPLITS:
            raise DataError(f"a JSONL task has splits {sorted(SPLITS)}, not {split!r}.")
        path = self.folder / SPLITS[split]
        if not path.is_file():
            raise DataError(f"{path} not found; a JSONL task folder needs train.jsonl and eval.jsonl.")
        examples = []
        for line_number, line in read_text_lines(path):
            if line.strip():
                example = _example(line, split, len(examples), f"{path}, line {line_number}")
                self._check_target(example, f"{path}, line {line_number}")
                examples.append(example)
        return examples

    def _check_target(self, example: Example, where: str) -> None:
        """The mr scorer needs MR targets: a bad one fails here, before any training or generation."""
        if self.scorer == "mr":
            try:
                mr.parse_mr(example.target)
            except mr.MRParseError as err:
                raise DataError(f"{where}: --jsonl-scorer mr needs a meaning representation as the answer; {err}") from err

    def prompt(self, example: Example) -> Prompt:
        turns = tuple(Message(m["role"], m["content"]) for m in example.fields.get("messages", ()))
        text = example.fields.get("prompt") or render_chat_text(turns)
        return Prompt(text=text, messages=turns or (Message("user", text),))

    def score(self, examples: Sequence[Example], predictions: Sequence[str], data: DataSource) -> list[Score]:
        return [SCORERS[self.scorer].score(e, p) for e, p in zip(examples, predictions, strict=True)]


def read_text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, with or without a BOM, LF or CRLF; bytes that are not UTF-8 fail
    naming the file, line and byte."""
    lines = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}, line {number}: byte {raw[err.start:err.start + 1]!r} at column {err.start + 1} "
                                f"is not UTF-8; save the file as UTF-8.") from None
            lines.append((number, text.rstrip("\r\n")))
    return lines


def render_chat_text(turns: Sequence[Message]) -> str:
    """Chat turns as one completion-style prompt for local models.

    >>> render_chat_text([Message("system", "Be brief."), Message("user", "2+2?")])
    'Be brief.\\n\\n### Input:\\n2+2?\\n\\n### Response:\\n'
    """
    parts = [m.content if m.role == "system" else f"### Input:\n{m.content}" if m.role == "user"
             else f"### Response:\n{m.content}" for m in turns]
    return "\n\n".join(parts) + "\n\n### Response:\n"


def _example(line: str, split: str, index: int, where: str) -> Example:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not JSON ({err}).") from err
    if isinstance(row, dict) and isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
        return Example(f"{split}/{index:05d}", {"prompt": row["prompt"]} | _extras(row), row["completion"].strip())
    messages = row.get("messages") if isinstance(row, dict) else None
    if (isinstance(messages, list) and len(messages) >= 2
            and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)
            and messages[-1].get("role") == "assistant"):
        turns = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
        return Example(f"{split}/{index:05d}", {"messages": turns} | _extras(row), messages[-1]["content"].strip())
    raise DataError(f"{where}: expected {{'prompt': str, 'completion': str}} or {{'messages': [..., "
                    f"{{'role': 'assistant', 'content': str}}]}}, got {line.strip()[:120]!r}.")


def _extras(row: dict) -> dict:
    """Optional fields a scorer can use (a CREATE TABLE `context` for the sql scorer)."""
    return {"context": row["context"]} if isinstance(row.get("context"), str) else {}
