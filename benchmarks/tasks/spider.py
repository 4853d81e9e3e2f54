"""Text-to-SQL on the Spider subset of sql-create-context, with the seed's prompt verbatim.

Rows: question, context (CREATE TABLE statements), answer (gold SQL), db_id. Scored by normalized exact match,
structural match, execution on the row's real sqlite database, and execution on databases synthesized from the
context (see benchmarks.metrics.sql). Headline: execution on the real database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from benchmarks.data import DataSource, load_hub_split, require_file
from benchmarks.tasks.base import Example, Score
from benchmarks.tasks.scorers import sql_score
from models.base import Message, Prompt
from models.errors import DataError

INSTRUCTION = (
    "You are a powerful text-to-SQL model. Your job is to answer questions about a database. You are given a "
    "question and context regarding one or more tables.\n\nYou must output the SQL query that answers the question."
)
HUB_ID = "samlhuillier/sql-create-context-spider-intersect"
FILES = {"train": "spider_create_context_train.json", "val": "spider_create_context_val.json"}
HUB_SPLITS = {"train": "train", "val": "validation"}


class SpiderTask:
    name = "spider"
    headline = "execution"
    metrics = ("execution", "execution_synth", "structural", "exact")
    train_split = "train"
    validation_split = None
    eval_split = "val"
    stop = ("\n",)

    def examples(self, data: DataSource, split: str) -> list[Example]:
        if split not in FILES:
            raise DataError(f"spider has splits {sorted(FILES)}, not {split!r}.")
        if data.kind == "hub":
            rows, origin = load_hub_split(HUB_ID, HUB_SPLITS[split]), f"hub:{HUB_ID}"
        else:
            path = require_file(data.root / "sql_create_context_spider_intersect" / FILES[split], "spider data file")
            rows, origin = _read_json_rows(path), str(path)
        return [_example(row, split, index, origin) for index, row in enumerate(rows)]

    def prompt(self, example: Example) -> Prompt:
        question, context = example.fields["question"], example.fields["context"]
        text = f"{INSTRUCTION}\n\n### Input:\n{question}\n\n### Context:\n{context}\n\n### Response:\n"
        messages = (Message("system", f"{INSTRUCTION}\n\n### Context:\n{context}"), Message("user", question))
        return Prompt(text=text, messages=messages)

    def score(self, examples: Sequence[Example], predictions: Sequence[str], data: DataSource) -> list[Score]:
        return [sql_score(e.target, p, db_path=database_path(data, e.fields.get("db_id")), context=e.fields["context"])
                for e, p in zip(examples, predictions, strict=True)]


def database_path(data: DataSource, db_id: str | None) -> Path | None:
    """The row's sqlite file in the seed layout, or None when the source has none (the row is then not
    executed on a real database, and not counted wrong)."""
    if data.root is None or not db_id:
        return None
    path = data.root / "spider" / "database" / db_id / f"{db_id}.sqlite"
    return path if path.is_file() else None


def _read_json_rows(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); expected a JSON array of rows.") from err
    if not isinstance(rows, list):
        raise DataError(f"{path} holds a JSON {type(rows).__name__}; expected an array of rows.")
    return rows


def _example(row: object, split: str, index: int, origin: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{origin}, row {index}: expected an object with question/context/answer, got {row!r:.80}.")
    bad = [key for key in ("question", "context", "answer") if not isinstance(row.get(key), str) or not row[key].strip()]
    if bad:
        raise DataError(f"{origin}, row {index}: missing or empty {bad} (row: {json.dumps(row)[:200]}). "
                        f"Each row needs question, context and answer strings, and optionally db_id.")
    fields = {key: row[key] for key in ("question", "context", "answer")} | {"db_id": row.get("db_id")}
    return Example(id=f"{split}/{index:05d}", fields=fields, target=row["answer"])
