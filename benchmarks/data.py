"""Where a task's rows come from: the shipped fixtures, a directory in the seed's layout, or the Hugging Face hub."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.base import fingerprint_rows  # noqa: F401 - re-exported: records fingerprint their rows
from models.errors import ConfigError, DataError

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DATA = REPO_ROOT / "fixtures" / "data"


@dataclass(frozen=True)
class DataSource:
    """A resolved `--data` value."""

    kind: str
    """'fixtures', 'dir' (a folder in the seed's layout) or 'hub'."""
    root: Path | None = None
    """The folder for 'fixtures' and 'dir'; None for 'hub'."""

    @property
    def label(self) -> str:
        """Key for thresholds and records: 'fixtures', 'hub', or 'dir'."""
        return self.kind

    def to_json(self) -> dict[str, Any]:
        return {"source": self.kind, "path": str(self.root) if self.root else None}


def resolve_data(value: str) -> DataSource:
    """`--data` value -> DataSource; an unusable value fails with the valid choices."""
    if value == "fixtures":
        return DataSource("fixtures", FIXTURES_DATA)
    if value == "hub":
        return DataSource("hub")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"--data {value!r} is neither 'fixtures', 'hub' nor an existing directory. Pass one of those; a directory "
            f"must have the seed's layout (e.g. sql_create_context_spider_intersect/, spider/database/, viggo/)."
        )
    return DataSource("dir", path.resolve())


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{what} not found: {path}. Check --data; the expected layout is in README.md (Data).")
    return path




def load_hub_split(dataset_id: str, split: str) -> list[dict[str, Any]]:
    """Rows of one split of a hub dataset via `datasets` (also accepts a local folder, as tests do)."""
    import datasets

    try:
        return [dict(row) for row in datasets.load_dataset(dataset_id, split=split)]
    except Exception as err:  # network, missing split, bad files: say which and what to do
        raise DataError(
            f"could not load split {split!r} of hub dataset {dataset_id!r}: {err}. Without network access use "
            f"--data fixtures or --data DIR (a copy in the seed's layout)."
        ) from err
