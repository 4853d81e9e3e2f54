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


def break_even(api: Candidate, hosted: Candidate, months: float) -> float | None:
    """The lowest monthly volume at which the self-hosted candidate costs no more than the API one; None when it
    never does (or a cost is unknown). Past it, each added instance may briefly tip the balance back: the plot shows
    the steps.

    Within the k-th instance's range ((k-1) C, k C], self-hosting costs the constant t_h + k F and the API
    t_a + p v, so the first range where self-hosting wins at its end holds the answer; past that point the gap at
    range ends changes by k (p C - F).
    """
    if hosted.hosting is None or api.per_request_usd is None or api.train_usd is None or hosted.train_usd is None:
        return None
    p, h = api.per_request_usd, hosted.hosting
    fixed, capacity = h.fixed_monthly_usd, h.capacity_per_hour * HOURS_PER_MONTH
    gap = (hosted.train_usd - api.train_usd) / months  # how much more self-hosting's training costs per month
    per_range = p * capacity - fixed  # how much the API's cost outgrows one more instance, per range
    if gap <= per_range:
        k = 1
    elif per_range <= 0:
        return None
    else:
        k = math.ceil(gap / per_range)
    if p == 0:
        return 0.0 if gap + k * fixed <= 0 else None
    return max((k - 1) * capacity, (gap + k * fixed) / p, 0.0)


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
