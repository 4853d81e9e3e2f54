"""Accuracy thresholds per task, data source and model, read from fixtures/thresholds.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import REPO_ROOT
from models.errors import ConfigError

THRESHOLDS_FILE = REPO_ROOT / "fixtures" / "thresholds.toml"


@dataclass(frozen=True)
class Threshold:
    value: float
    """Minimum headline accuracy, in [0, 1]."""
    file: str
    key: str
    """Where it came from, e.g. 'spider.fixtures."smollm2-135m"', or '(none set)'."""

    def to_json(self) -> dict[str, object]:
        return {"value": self.value, "file": self.file, "key": self.key}


def lookup(task: str, source: str, model: str, path: Path = THRESHOLDS_FILE) -> Threshold:
    """The model's threshold, else the table's `default`, else 0 (recorded as '(none set)')."""
    try:
        table = tomllib.loads(path.read_text()) if path.exists() else {}
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"cannot parse {path}: {err}") from err
    section = table.get(task, {}).get(source, {})
    for name in (model, "default"):
        if name in section:
            value = float(section[name])
            if not 0 <= value <= 1:
                raise ConfigError(f"{path}: {task}.{source}.{name} = {value} is not an accuracy in [0, 1].")
            return Threshold(value, _display(path), f'{task}.{source}."{name}"')
    return Threshold(0.0, _display(path), "(none set)")


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
