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
    problems = check(path)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    section = _read(path).get(task, {}).get(source, {})
    for name in (model, "default"):
        if name in section:
            return Threshold(float(section[name]), _display(path), f'{task}.{source}."{name}"')
    return Threshold(0.0, _display(path), "(none set)")


def check(path: Path = THRESHOLDS_FILE) -> list[str]:
    """Every problem of a thresholds file: TOML syntax, the [task.source] layout, values that are not an accuracy.

    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "t.toml"
    >>> _ = bad.write_text('[spider.fixtures]\\n"smollm2-135m" = "high"\\ndefault = 1.5\\n')
    >>> for problem in check(bad): print(problem)
    spider.fixtures."smollm2-135m" = 'high' is not a number in [0, 1]
    spider.fixtures."default" = 1.5 is not a number in [0, 1]
    """
    try:
        table = _read(path)
    except ConfigError as err:
        return [str(err)]
    problems = []
    for task, sources in table.items():
        if not isinstance(sources, dict):
            problems.append(f"{task} = {sources!r} should be a table [{task}.<data source>]")
            continue
        for source, models in sources.items():
            if not isinstance(models, dict):
                problems.append(f"{task}.{source} = {models!r} should be a table of model = threshold")
                continue
            problems += [f'{task}.{source}."{model}" = {value!r} is not a number in [0, 1]'
                         for model, value in models.items() if not _is_accuracy(value)]
    return problems


def _is_accuracy(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1  # NaN fails too


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot parse thresholds file {path}: {err}; fix it or pass another with --thresholds.") from err


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
