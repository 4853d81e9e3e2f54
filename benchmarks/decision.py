"""Which candidate to pick at a monthly volume: monthly cost, break-even volumes, and the pick.

Two ways to pay for answers:

- **Per request** (an API): monthly cost = training / months + volume x the price per request.
- **An instance** (self-hosted): monthly cost = training / months + instances x hourly price x 730 h, where one
  instance serves `capacity_per_hour` requests within the latency SLO (measured by the serving benchmark) and the
  volume needs ceil(volume / monthly capacity) of them, at least one (an always-on deployment).

The pick at a volume: among the candidates not significantly less accurate than the most accurate one (paired test
on the items both answered, two-sided p < ALPHA), the cheapest. A candidate whose accuracy is unknown (no run: e.g.
an OpenAI model priced without a key) cannot be judged; it stays in the pick only when `admit_unknown`, and a pick
that rests on it says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from benchmarks.stats import PairedTest, paired_test

HOURS_PER_MONTH = 730.0
"""Average hours in a month (8,760 / 12), how cloud providers bill an always-on instance."""
ALPHA = 0.05
"""A candidate is 'significantly less accurate' than the best at a paired-test p-value below this."""


@dataclass(frozen=True)
class Hosting:
    """A self-hosted deployment measured by the serving benchmark."""

    hourly_usd: float
    """Price of one instance per hour (the price table's rate for the hardware it was measured on)."""
    capacity_per_hour: float
    """Requests one instance sustains per hour with p95 latency within the SLO."""
    slo_s: float
    concurrency: int
    """Requests in flight at the measured capacity."""

    @property
    def fixed_monthly_usd(self) -> float:
        """One always-on instance for a month."""
        return self.hourly_usd * HOURS_PER_MONTH

    @property
    def usd_per_1k(self) -> float:
        """Deploy cost per 1K requests at full use of the instance: hourly price / requests per hour x 1000."""
        return self.hourly_usd / self.capacity_per_hour * 1000

    def instances(self, monthly_requests: float) -> int:
        return max(1, math.ceil(monthly_requests / (self.capacity_per_hour * HOURS_PER_MONTH)))


@dataclass(frozen=True)
class Candidate:
    """One task x model, with what its records say."""

    task: str
    model: str
    accuracy: float | None
    """The headline accuracy; None when unknown (no run)."""
    ci95: tuple[float, float] | None
    train_usd: float | None
    """What fine-tuning cost (0 for a base model); None when unknown."""
    per_request_usd: float | None = None
    """Price per request of an API (token prices x the task's tokens); None for self-hosted candidates."""
    hosting: Hosting | None = None
    items: Mapping[str, bool | float | None] = field(default_factory=dict)
    """Headline outcome per item id, for the paired test."""
    data_fingerprint: str | None = None
    """Hash of the evaluated rows: items are paired only between candidates evaluated on the same rows."""
    source: str = ""
    """Where the numbers come from (record files and test names)."""

    @property
    def self_hosted(self) -> bool:
        return self.hosting is not None

    def monthly_usd(self, monthly_requests: float, months: float) -> float | None:
        """Cost of a month at this volume, training amortized over `months`; None when a part is unknown."""
        if self.train_usd is None:
            return None
        training = self.train_usd / months
        if self.hosting is not None:
            return training + self.hosting.instances(monthly_requests) * self.hosting.fixed_monthly_usd
        if self.per_request_usd is None:
            return None
        return training + monthly_requests * self.per_request_usd


@dataclass(frozen=True)
class BreakEven:
    """Monthly volumes over which self-hosting costs no more than the API."""

    start: float
    """The lowest such volume."""
    end: float | None
    """Where self-hosting stops paying for good (None: never). Between start and end, each added instance may
    briefly tip the balance back: the plot shows the steps."""


def break_even(api: Candidate, hosted: Candidate, months: float) -> BreakEven | None:
    """From which monthly volume (and up to which) the self-hosted candidate costs no more than the API one; None
    when it never does or a cost is unknown.

    Within the k-th instance's range ((k-1) C, k C], self-hosting costs the constant t_h + k F and the API t_a + p v,
    so self-hosting wins somewhere in that range exactly when it wins at its end: gap <= k (p C - F), with gap the
    difference of the amortized training costs. The left side is fixed and the right side moves by (p C - F) per
    range, so the winning ranges are all from some k on (p C > F) or all up to some k (p C <= F).
    """
    if hosted.hosting is None or api.per_request_usd is None or api.train_usd is None or hosted.train_usd is None:
        return None
    p, h = api.per_request_usd, hosted.hosting
    fixed, capacity = h.fixed_monthly_usd, h.capacity_per_hour * HOURS_PER_MONTH
    gap = (hosted.train_usd - api.train_usd) / months
    per_range = p * capacity - fixed
    if per_range > 0:
        first, last = max(1, math.ceil(gap / per_range)), None
    elif gap <= per_range:  # wins in the first range; p C <= F: the API gains on every later range
        first = 1
        last = None if per_range == 0 and gap <= 0 else (math.floor(gap / per_range) if per_range < 0 else 1)
    else:
        return None
    start = 0.0 if p == 0 else max((first - 1) * capacity, (gap + first * fixed) / p, 0.0)
    return BreakEven(start, None if last is None else last * capacity)


@dataclass(frozen=True)
class Judged:
    candidate: Candidate
    test: PairedTest | None
    """Against the most accurate candidate (None for the best itself, or without shared items)."""
    eligible: bool
    why: str


def judge(candidates: Sequence[Candidate], *, admit_unknown: bool = True) -> list[Judged]:
    """Which candidates are not significantly less accurate than the most accurate one."""
    known = [c for c in candidates if c.accuracy is not None]
    best = max(known, key=lambda c: c.accuracy, default=None)
    judged = []
    for c in candidates:
        if c.accuracy is None:
            judged.append(Judged(c, None, admit_unknown, "accuracy unknown (no run): not judged"))
        elif c is best:
            judged.append(Judged(c, None, True, "most accurate"))
        elif c.data_fingerprint != best.data_fingerprint:
            judged.append(Judged(c, None, False, f"evaluated on other rows than {best.model}: cannot be compared"))
        else:
            test = paired_test([(best.items[i], c.items[i]) for i in best.items.keys() & c.items.keys()
                                if best.items[i] is not None and c.items[i] is not None])
            if test is None:
                judged.append(Judged(c, None, False, f"no items shared with {best.model}: cannot be compared"))
            elif test.p_value < ALPHA and test.new_mean < test.old_mean:
                judged.append(Judged(c, test, False, f"less accurate than {best.model} (paired p={test.p_value:.3g})"))
            else:
                judged.append(Judged(c, test, True, f"not significantly less accurate than {best.model} "
                                                    f"(paired p={test.p_value:.3g})"))
    return judged


@dataclass(frozen=True)
class Pick:
    volume: float
    candidate: Candidate | None
    monthly_usd: float | None
    provisional: bool
    """The pick's accuracy is unknown: it is cheapest, but nothing shows it is accurate enough."""
    why: str


def pick(judged: Sequence[Judged], monthly_requests: float, months: float) -> Pick:
    """The cheapest eligible candidate at this volume."""
    priced = [(j.candidate.monthly_usd(monthly_requests, months), j) for j in judged if j.eligible]
    priced = [(usd, j) for usd, j in priced if usd is not None]
    if not priced:
        return Pick(monthly_requests, None, None, False, "no eligible candidate has a known cost")
    usd, chosen = min(priced, key=lambda item: (item[0], item[1].candidate.model))
    provisional = chosen.candidate.accuracy is None
    others = len(priced) - 1
    return Pick(monthly_requests, chosen.candidate, usd, provisional,
                f"cheapest of {others + 1} eligible candidate(s) at {monthly_requests:,.0f} requests/month"
                + (" (its accuracy is unknown: run it before relying on this)" if provisional else ""))
