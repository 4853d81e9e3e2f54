"""One exception tree for ftbench, so callers can catch exactly what they mean.

    FtbenchError                  base: every error ftbench raises on purpose
    ├── ConfigError               a bad name, option, path or recipe (the user can fix it)
    │   ├── UnknownNameError      a model, task or scorer name that is not in its registry
    │   └── DataError             a malformed data file or row (names file and row)
    ├── MissingDependencyError    an optional package is not installed (names the pip extra)
    ├── BackendError              a model backend failed (generation, HTTP, loading)
    └── BudgetError               paid work refused before any call (over --max-cost or no --run-paid)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FtbenchError(Exception):
    """Base class of every error ftbench raises on purpose."""


class ConfigError(FtbenchError, ValueError):
    """A bad name, option, path or recipe that the user can fix."""


class UnknownNameError(ConfigError, KeyError):
    """A name that is not in its registry; the message lists the valid ones and the closest match."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(self.known)}.")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DataError(ConfigError):
    """A malformed data file or row."""


class MissingDependencyError(FtbenchError, ImportError):
    """An optional package is missing; the message says what to install."""


class BackendError(FtbenchError, RuntimeError):
    """A model backend failed."""


class BudgetError(FtbenchError):
    """Paid work refused before any paid call was made."""
