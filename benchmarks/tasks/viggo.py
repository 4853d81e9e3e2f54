"""ViGGO in the seed's direction: sentence -> meaning representation, with the seed's prompt.

Rows: mr (the target), ref (the sentence). Scored by exact match, function + attribute set (headline), and slot
precision/recall/F1 (benchmarks.metrics.mr).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from benchmarks.data import DataSource, load_hub_split, require_file
from benchmarks.metrics import mr
from benchmarks.tasks.base import Example, Score
from benchmarks.tasks.scorers import mr_score
from models.base import Message, Prompt
from models.errors import DataError

ACTS = ["inform", "request", "give_opinion", "confirm", "verify_attribute", "suggest", "request_explanation",
        "recommend", "request_attribute"]
ATTRIBUTES = ["name", "exp_release_date", "release_year", "developer", "esrb", "rating", "genres",
              "player_perspective", "has_multiplayer", "platforms", "available_on_steam", "has_linux_release",
              "has_mac_release", "specifier"]
INSTRUCTION_LINES = (
    "Given a target sentence construct the underlying meaning representation of the input sentence as a single "
    "function with attributes and attribute values.",
    "This function should describe the target string accurately and the function must be one of the following "
    f"{ACTS}.",
    f"The attributes must be one of the following: {ATTRIBUTES}",
)
HUB_ID = "GEM/viggo"
HUB_SPLITS = {"train": "train", "valid": "validation", "test": "test"}


class ViggoTask:
    name = "viggo"
    headline = "function_attributes"
    metrics = ("function_attributes", "exact", "slot_f1")
    train_split = "train"
    validation_split = "valid"
    eval_split = "test"
    stop = ("\n",)

    def examples(self, data: DataSource, split: str) -> list[Example]:
        if split not in HUB_SPLITS:
            raise DataError(f"viggo has splits {sorted(HUB_SPLITS)}, not {split!r}.")
        if data.kind == "hub":
            rows = [{"mr": r["meaning_representation"], "ref": r["target"]}
                    for r in load_hub_split(HUB_ID, HUB_SPLITS[split])]
            origin = f"hub:{HUB_ID}"
        else:
            path = require_file(data.root / "viggo" / f"{split}.csv", "viggo data file")
            rows, origin = _read_csv(path), str(path)
        return [_example(row, split, index, origin) for index, row in enumerate(rows)]

    def prompt(self, example: Example) -> Prompt:
        sentence = example.fields["ref"]
        text = "\n".join(INSTRUCTION_LINES) + f"\n\n### Target sentence:\n{sentence}\n\n### Meaning representation:\n"
        return Prompt(text=text, messages=(Message("system", " ".join(INSTRUCTION_LINES)), Message("user", sentence)))

    def score(self, examples: Sequence[Example], predictions: Sequence[str], data: DataSource) -> list[Score]:
        return [mr_score(e.target, p) for e, p in zip(examples, predictions, strict=True)]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"mr", "ref"} <= set(reader.fieldnames):
            raise DataError(f"{path}: header is {reader.fieldnames}; expected the columns 'mr' and 'ref'.")
        return list(reader)


def _example(row: dict[str, str], split: str, index: int, origin: str) -> Example:
    try:
        mr.parse_mr(row.get("mr") or "")
    except mr.MRParseError as err:
        raise DataError(f"{origin}, row {index}: {err}") from err
    if not (row.get("ref") or "").strip():
        raise DataError(f"{origin}, row {index}: empty 'ref' sentence; every row needs mr and ref.")
    return Example(id=f"{split}/{index:05d}", fields={"ref": row["ref"], "mr": row["mr"]}, target=row["mr"])
