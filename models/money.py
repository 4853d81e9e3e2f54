"""The cost cap's default and how money is printed. Standard library only: the root conftest.py imports it."""

from __future__ import annotations

import math

DEFAULT_MAX_COST_USD = 5.0
"""--max-cost of pytest and `ftbench finetune`, and Budget's default: paid work estimated above it is refused."""


def usd(*amounts: float) -> list[str]:
    """Dollar amounts with one number of decimals (at least 2) that shows each nonzero amount with 2 significant
    digits and tells different amounts apart, so a refusal never reads "$0.06, over $0.06".

    >>> usd(0.0612, 0.06)
    ['$0.061', '$0.060']
    >>> usd(12.5, 5.0)
    ['$12.50', '$5.00']
    >>> usd(5.004, 5.0)
    ['$5.004', '$5.000']
    >>> usd(0.000268)
    ['$0.00027']
    """
    def fine_enough(decimals: int) -> bool:
        shown = [round(a, decimals) for a in amounts]
        distinct = len(set(shown)) == len(set(amounts))
        return distinct and all(a == 0 or abs(a) >= 10 ** (1 - decimals) for a in amounts)

    decimals = next((d for d in range(2, 10) if fine_enough(d)), 10)
    return [f"${a:.{decimals}f}" for a in amounts]


def usd_at_least(amount: float, like: str) -> str:
    """`amount` rounded UP to the decimals of `like` (a usd() string): a cap that admits it.

    >>> usd_at_least(0.0612, "$0.061")
    '0.062'
    """
    decimals = len(like.partition(".")[2])
    return f"{math.ceil(amount * 10 ** decimals - 1e-9) / 10 ** decimals:.{decimals}f}"
