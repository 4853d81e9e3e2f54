"""The result types every SQL metric returns, and the errors raised when the data (not the prediction) is bad."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One metric's judgement of one prediction.

    >>> Verdict(False, "rows differ").to_json()
    {'correct': False, 'reason': 'rows differ'}
    """

    correct: bool
    """True when the prediction counts as right under this metric."""
    reason: str | None = None
    """Why it is wrong ('syntax error: ...', 'denied: ...', 'timeout after 2s', ...), or a caveat on a right one."""

    def to_json(self) -> dict[str, bool | str | None]:
        return {"correct": self.correct, "reason": self.reason}


@dataclass(frozen=True)
class MetricError:
    """A metric that could not be computed for a reason other than the prediction: neither right nor wrong.

    >>> MetricError("gold query failed: no such table: t").to_json()
    {'correct': None, 'error': 'gold query failed: no such table: t'}
    """

    reason: str
    """'gold query failed: ...', 'database unreadable: <path>: ...', 'scorer error: <exception>: ...'."""

    @property
    def correct(self) -> None:
        """None, like a metric that was not computed: code that reads ``.correct`` never counts it right or wrong."""
        return None

    def to_json(self) -> dict[str, None | str]:
        return {"correct": None, "error": self.reason}


@dataclass(frozen=True)
class ExecResult:
    """What one sandboxed statement returned: rows, or an error that says why there are none."""

    rows: list[tuple] | None
    """Fetched rows; None when the statement failed."""
    columns: list[str]
    """Result column names (empty when the statement failed)."""
    error: str | None = None
    """'syntax error: ...', 'denied: ...', 'timeout after 2s', 'too many rows (>100000)', 'result too large ...', 'error: ...'."""

    @property
    def ok(self) -> bool:
        return self.error is None


class GoldQueryError(ValueError):
    """The gold query failed (parse, execution or timeout): the data is bad, not the prediction."""


class IncompleteSchemaError(GoldQueryError):
    """The gold query names a table or column that the schema used to synthesize databases lacks."""


class UnreadableDatabaseError(Exception):
    """The database file cannot be opened or read (not sqlite, truncated, corrupt): the data is bad, not the query."""
