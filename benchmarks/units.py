"""How the diff and the report show a number: "–" for a value not measured, else a short figure with its unit.

>>> percent(0.75), seconds(0.01234), usd(1234.5), usd(0.0123), usd(None)
('75.0%', '0.0123s', '$1,234.50', '$0.0123', '–')
"""

from __future__ import annotations


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}s"


def usd(value: float | None) -> str:
    """Cents from $1 up; three significant digits below, so a cost per request never reads $0.00."""
    if value is None:
        return "–"
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:.3g}"
