"""Writing a file whole: a reader, a second process or a crash never sees half of it.

Every file ftbench writes in one go goes through here: the bytes go to a temporary sibling, are flushed to disk, and
the sibling is renamed over the target (`os.replace`: atomic on POSIX and Windows). If anything fails on the way,
the sibling is removed and the target keeps its old content.

>>> import tempfile
>>> target = Path(tempfile.mkdtemp()) / "run.md"
>>> write_atomic(target, "whole")
>>> with replacing(target) as temporary:
...     _ = temporary.write_text("half")
...     raise OSError("disk full")
Traceback (most recent call last):
OSError: disk full
>>> target.read_text(), [p.name for p in target.parent.iterdir()]
('whole', ['run.md'])
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; when the block succeeds it replaces `path`.

    The temporary name is new on every call, so threads and processes may write one target at once (the last
    rename wins, whole). It starts with `.tmp-`, so a folder listing shows what a killed process left behind.
    `durable=False` skips the fsync: for a cache, whose entry lost to a power cut is only a miss, and whose writes
    happen inside timed generation.
    """
    target = Path(path)
    temporary = target.with_name(f".tmp-{target.name}.{secrets.token_hex(4)}")
    try:
        yield temporary
        if durable:
            _flush_to_disk(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], data: str | bytes, *, durable: bool = True) -> None:
    """Write `data` (text as UTF-8) to `path` whole; see `replacing`."""
    with replacing(path, durable=durable) as temporary:
        if isinstance(data, str):
            temporary.write_text(data, encoding="utf-8")
        else:
            temporary.write_bytes(data)


def _flush_to_disk(path: Path) -> None:
    """fsync before the rename: after a power cut the target then holds the old bytes or the new, never nothing."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
