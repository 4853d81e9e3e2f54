"""Two runs compared pair by pair, and the gate: which (task, model) pairs regressed.

The records of two runs (see `benchmarks/runs.py`) are paired by (task, model). For each pair: accuracy old -> new
for the headline and every metric, with an exact paired test on the items both runs scored (never an unpaired
comparison); latency p50/p95; cost (train, eval, per 1K requests). Runs whose data fingerprint, model fingerprint,
price table date or hardware differ are flagged, not silently compared. Pairs present in one run only are listed as
added or removed. `ftbench diff` (benchmarks/cli/diff.py) shows the result; the pytest gate `--baseline` uses
`diff_records` and `format_row`.

Gating (`GateRules`; every limit is an option of `ftbench diff`):
    accuracy   the headline metric dropped on the shared items, significantly (p < --alpha) AND by more than
               --min-drop percentage points
    latency    per-example latency p50 rose by more than --max-latency-increase percent
    cost       eval cost per 1K requests, or train cost, rose by more than --max-cost-increase percent
    errors     a pair whose new run has failed items (an outage, timeouts, malformed answers, scorer errors) is
               marked ERRORS and not judged: its accuracy covers only the answered items, so it is no evidence of a
               regression, and no evidence of its absence either. So is a pair where either run has n = 0
               (data.n or the headline metric's n): an empty eval set, or nothing scored, proves nothing, so it
               never passes
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from benchmarks.record import ErrorSummary, Record
from benchmarks.runs import DiffInputError, Pair, Run, read_run
from benchmarks.stats import PairedTest, paired_test
from benchmarks.units import percent, seconds, usd
from models.errors import ConfigError

EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE, EXIT_ERRORS = 0, 1, 2, 3
"""The exit codes of `ftbench diff`: no regression, a regression, unusable input, a pair that cannot be judged."""


# ---------------------------------------------------------------------------------------------- gating rules


@dataclass(frozen=True)
class GateRules:
    """When a (task, model) pair counts as regressed. The defaults are those of `ftbench diff`."""

    alpha: float = 0.05
    """Significance level of the paired test: an accuracy drop counts only when p < alpha."""
    min_drop: float = 2.0
    """Smallest accuracy drop that counts, in percentage points on the shared items (and only when significant)."""
    max_latency_increase: float = 25.0
    """Largest allowed rise of per-example latency p50, in percent of the old value."""
    max_cost_increase: float = 10.0
    """Largest allowed rise of eval cost per 1K requests and of train cost, in percent of the old value."""

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}; 0.05 is the usual choice")
        for name in ("min_drop", "max_latency_increase", "max_cost_increase"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_json(self) -> dict[str, float]:
        return asdict(self)


# --------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Change:
    """One number, old -> new.

    >>> Change(0.5, 0.75).percent, Change(0.0, 0.1).rose_above(25.0), Change(None, 1.0).delta is None
    (50.0, True, True)
    """

    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def percent(self) -> float | None:
        """Relative change in percent; None when a value is missing, the old one is 0, or the ratio overflows."""
        if self.delta is None or self.old == 0:
            return None
        ratio = self.delta / abs(self.old) * 100
        return ratio if math.isfinite(ratio) else None  # 1e300 over 1e-300: never print inf

    def rose_above(self, limit_percent: float) -> bool:
        """True when the value rose by more than `limit_percent` (any rise from 0, or beyond float range, counts)."""
        if self.delta is None or self.delta <= 0:
            return False
        return self.percent is None or self.percent > limit_percent

    def to_json(self) -> dict[str, float | None]:
        return {"old": self.old, "new": self.new, "delta": self.delta, "percent": self.percent}


@dataclass(frozen=True)
class MetricDiff:
    """One metric of a pair: the recorded accuracies old -> new and the paired test on the shared items."""

    name: str
    value: Change
    paired: PairedTest | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.value.to_json(),
            "paired": None if self.paired is None else self.paired.to_json(),
        }


@dataclass(frozen=True)
class PairDiff:
    """Everything `ftbench diff` says about one (task, model) pair."""

    task: str
    model: str
    metric: str
    """The headline metric (the one the accuracy gate reads)."""
    metrics: tuple[MetricDiff, ...]
    """The headline first, then every other metric by name."""
    latency_p50: Change
    latency_p95: Change
    cost_train: Change
    cost_eval: Change
    cost_per_1k: Change
    error_rate: Change = Change(0.0, 0.0)
    """Share of items that failed (no answer or no score), old -> new."""
    errors: list[str] = field(default_factory=list)
    """The new run's failures, or a run with n = 0, when there are any: the pair is then not judged."""
    regressions: list[str] = field(default_factory=list)
    """Why this pair fails the gate, one sentence each; empty when it passes."""
    flags: list[str] = field(default_factory=list)
    """What differs between the runs besides the change under test (data, model, prices, hardware, items)."""

    @property
    def headline(self) -> MetricDiff:
        return self.metrics[0]

    @property
    def status(self) -> str:
        return "errors" if self.errors else "regression" if self.regressions else "flagged" if self.flags else "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "metric": self.metric,
            "status": self.status,
            "metrics": [m.to_json() for m in self.metrics],
            "latency_s": {"p50": self.latency_p50.to_json(), "p95": self.latency_p95.to_json()},
            "cost_usd": {
                "train": self.cost_train.to_json(),
                "eval": self.cost_eval.to_json(),
                "per_1k_requests": self.cost_per_1k.to_json(),
            },
            "error_rate": self.error_rate.to_json(),
            "errors": list(self.errors),
            "regressions": list(self.regressions),
            "flags": list(self.flags),
        }


@dataclass(frozen=True)
class RunDiff:
    """Two runs compared: the common pairs, and the pairs found in one run only."""

    old: Run
    new: Run
    rules: GateRules
    pairs: tuple[PairDiff, ...]
    added: tuple[Pair, ...]
    """(task, model) pairs in the new run only."""
    removed: tuple[Pair, ...]
    """(task, model) pairs in the old run only."""

    @property
    def regressions(self) -> list[str]:
        return [f"{p.task} / {p.model}: {r}" for p in self.pairs for r in p.regressions]

    @property
    def flags(self) -> list[str]:
        return [f"{p.task} / {p.model}: {f}" for p in self.pairs for f in p.flags]

    @property
    def errors(self) -> list[str]:
        return [f"{p.task} / {p.model}: {e}" for p in self.pairs for e in p.errors]

    @property
    def exit_code(self) -> int:
        return EXIT_ERRORS if self.errors else EXIT_REGRESSION if self.regressions else EXIT_OK

    @property
    def verdict(self) -> str:
        if self.errors:
            errored = sum(bool(p.errors) for p in self.pairs)
            return (f"ERRORS in {errored} of {len(self.pairs)} pairs (not judged)"
                    + (f"; {len(self.regressions)} regression(s) elsewhere" if self.regressions else ""))
        if not self.regressions:
            return f"no regression ({len(self.pairs)} pairs compared)"
        regressed = sum(bool(p.regressions) for p in self.pairs)
        return f"{len(self.regressions)} regression(s) in {regressed} of {len(self.pairs)} pairs"

    def to_json(self) -> dict[str, Any]:
        return _finite({
            "format": "ftbench-diff/1",
            "verdict": "errors" if self.errors else "regression" if self.regressions else "ok",
            "exit_code": self.exit_code,
            "old": self.old.to_json(),
            "new": self.new.to_json(),
            "rules": self.rules.to_json(),
            "pairs": [p.to_json() for p in self.pairs],
            "added": [{"task": t, "model": m} for t, m in self.added],
            "removed": [{"task": t, "model": m} for t, m in self.removed],
            "errors": self.errors,
            "regressions": self.regressions,
            "flags": self.flags,
        })


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------------ diff


def diff_records(old: Record, new: Record, rules: GateRules = GateRules()) -> PairDiff:
    """Compare two records of the same (task, model) and apply the gating rules."""
    metric = new.headline or old.headline or "accuracy"
    metrics = tuple(_metric_diff(old, new, name) for name in _metric_names(old, new, metric))
    draft = PairDiff(
        task=new.task,
        model=new.model,
        metric=metric,
        metrics=metrics,
        latency_p50=_change(old.latency.p50, new.latency.p50),
        latency_p95=_change(old.latency.p95, new.latency.p95),
        cost_train=_change(old.cost.train, new.cost.train),
        cost_eval=_change(old.cost.eval, new.cost.eval),
        cost_per_1k=_change(old.cost.per_1k_requests, new.cost.per_1k_requests),
        error_rate=Change(old.errors.rate, new.errors.rate),
    )
    failures = _error_lines(new.errors) + _nothing_scored(old, "old", metric) + _nothing_scored(new, "new", metric)
    if failures:  # an outage, a broken scorer, an empty run: the numbers describe part of a run or none, not judged
        return replace(draft, errors=failures, flags=_flags(old, new, draft))
    return replace(draft, regressions=_regressions(draft, rules), flags=_flags(old, new, draft))


def _error_lines(errors: ErrorSummary) -> list[str]:
    if not errors.count:
        return []
    return [f"{errors.count} items failed ({errors.rate:.1%}): {dict(errors.by_reason)}; "
            f"first: {errors.first_errors()}"]


def _nothing_scored(record: Record, side: str, metric: str) -> list[str]:
    """An empty eval set or a headline nobody scored: the paired test would see no item and pass, so say so."""
    if record.data.n == 0:
        return [f"the {side} run evaluated no item (data.n = 0): check --limit and the data split, then rerun it"]
    if record.metric(metric).n == 0:
        return [f"the {side} run scored no item on {metric} (metrics.{metric}.n = 0): nothing to compare; "
                f"see its errors, then rerun it"]
    return []


def diff_files(
    old_path: str | os.PathLike[str], new_path: str | os.PathLike[str], rules: GateRules = GateRules()
) -> RunDiff:
    """Compare every (task, model) pair two pytest-benchmark files share; raises DiffInputError on bad input."""
    old, new = read_run(old_path), read_run(new_path)
    common = sorted(old.records.keys() & new.records.keys())
    if not common:
        raise DiffInputError(
            f"{old_path} and {new_path} have no (task, model) pair in common "
            f"(old: {_pair_list(old.records)}; new: {_pair_list(new.records)}); diff runs of the same tasks and models"
        )
    return RunDiff(
        old=old,
        new=new,
        rules=rules,
        pairs=tuple(diff_records(old.records[p], new.records[p], rules) for p in common),
        added=tuple(sorted(new.records.keys() - old.records.keys())),
        removed=tuple(sorted(old.records.keys() - new.records.keys())),
    )


def _pair_list(records: Mapping[Pair, Any]) -> str:
    return ", ".join(f"{t}/{m}" for t, m in sorted(records))


def _metric_names(old: Record, new: Record, headline: str) -> list[str]:
    others = (old.metrics.keys() | new.metrics.keys()) - {headline}
    return [headline, *sorted(others)]


def _metric_diff(old: Record, new: Record, name: str) -> MetricDiff:
    return MetricDiff(name=name, value=Change(old.metric_value(name), new.metric_value(name)),
                      paired=_paired(old, new, name))


def _paired(old: Record, new: Record, metric: str) -> PairedTest | None:
    """The paired test of `metric` on the items both runs scored; None when they share no scored item."""
    pairs = []
    for item_id in sorted(old.items.keys() & new.items.keys()):
        before, after = old.outcome(item_id, metric), new.outcome(item_id, metric)
        if before is not None and after is not None:  # None: not scored
            pairs.append((float(before), float(after)))
    return paired_test(pairs)


def _change(old: float | None, new: float | None) -> Change:
    """old -> new as floats (a record may hold an int, as JSON wrote it)."""
    return Change(None if old is None else float(old), None if new is None else float(new))


def _regressions(pair: PairDiff, rules: GateRules) -> list[str]:
    found = []
    test = pair.headline.paired
    if test is not None and test.p_value < rules.alpha and test.drop_points > rules.min_drop:
        found.append(
            f"{pair.metric} accuracy dropped {test.drop_points:.1f} points on {test.shared} shared items "
            f"({test.old_mean:.1%} -> {test.new_mean:.1%}, {test.old_better} lost / {test.new_better} gained, "
            f"p={test.p_value:.3g} < alpha {rules.alpha}; --min-drop {rules.min_drop})"
        )
    if pair.latency_p50.rose_above(rules.max_latency_increase):
        found.append(
            f"latency p50 rose {_rise(pair.latency_p50, seconds)} "
            f"(--max-latency-increase {rules.max_latency_increase}%)"
        )
    for label, change in (("eval cost per 1K requests", pair.cost_per_1k), ("train cost", pair.cost_train)):
        if change.rose_above(rules.max_cost_increase):
            found.append(f"{label} rose {_rise(change, usd)} (--max-cost-increase {rules.max_cost_increase}%)")
    return found


def _rise(change: Change, unit) -> str:
    rise = ("from zero" if change.old == 0 else "beyond float range" if change.percent is None
            else f"{change.percent:+.1f}%")
    return f"{rise}: {unit(change.old)} -> {unit(change.new)}"


def _flags(old: Record, new: Record, pair: PairDiff) -> list[str]:
    """What differs besides the change under test: reported with the row so nothing is compared silently."""
    flags = []
    if old.headline != new.headline:
        flags.append(f"headline metric differs: {old.headline!r} -> {new.headline!r}")
    for label, before, after in (
        ("data fingerprint", old.data.fingerprint, new.data.fingerprint),
        ("price table date (cost_usd.prices_date)", old.cost.prices_date, new.cost.prices_date),
        ("hardware (machine.hardware)", old.machine.hardware, new.machine.hardware),
    ):
        if before != after:
            flags.append(f"{label} differs: {_short(before)} -> {_short(after)}")
    flags.extend(_model_fingerprint_flags(old.model_fingerprint, new.model_fingerprint))
    flags.extend(_item_flags(old.items, new.items, pair.headline))
    return flags


def _model_fingerprint_flags(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        details = "; ".join(_differences(old, new))
        return [f"model fingerprint differs in {', '.join(keys)} ({details})"]
    return [f"model fingerprint differs: {_short(old)} -> {_short(new)}"]


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """'key.sub: old -> new' for every leaf that differs, so a recipe change reads as the one knob that moved."""
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        return [] if old == new else [f"{prefix}: {_short(old)} -> {_short(new)}"]
    return [
        line
        for key in sorted(old.keys() | new.keys(), key=str)
        for line in _differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
    ]


def _item_flags(old_items: Mapping[str, Any], new_items: Mapping[str, Any], headline: MetricDiff) -> list[str]:
    if headline.paired is None:
        return [f"no item scored on {headline.name!r} in both runs: the accuracy change is not tested"]
    only_old, only_new = len(old_items.keys() - new_items.keys()), len(new_items.keys() - old_items.keys())
    if only_old or only_new:
        return [
            f"item sets differ ({only_old} only in old, {only_new} only in new): "
            f"accuracy is tested on the {headline.paired.shared} items both runs scored"
        ]
    return []


def _short(value: Any, width: int = 24) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=dict)  # read-only maps
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------------------------------ formatting
# Shared with the table and the Markdown of `ftbench diff` (benchmarks/cli/diff.py).


def change_text(change: Change, unit, arrow: str = "->", relative: bool = True) -> str:
    """'old -> new' in `unit` (a function of benchmarks/units.py), then the change in percent when `relative`."""
    text = f"{unit(change.old)} {arrow} {unit(change.new)}"
    if relative and change.percent is not None:
        text += f" ({change.percent:+.1f}%)"
    return text


def points_text(metric: MetricDiff) -> str:
    """The recorded accuracy's change in percentage points."""
    delta = metric.value.delta
    return "–" if delta is None else f"{delta * 100:+.1f} pts"


def paired_text(test: PairedTest | None) -> str:
    """Items lost and gained of those both runs scored, and the paired test's p-value."""
    if test is None:
        return "no shared items"
    return f"-{test.old_better}/+{test.new_better} of {test.shared}, p={test.p_value:.3g}"


def format_row(pair: PairDiff) -> str:
    """One line for a pytest failure message: the numbers, then why it regressed and what is flagged."""
    head = pair.headline
    parts = [
        f"{pair.task} / {pair.model}: {pair.metric} {change_text(head.value, percent, relative=False)} "
        f"({points_text(head)}; paired {paired_text(head.paired)})",
        f"latency p50 {change_text(pair.latency_p50, seconds)}, p95 {change_text(pair.latency_p95, seconds)}",
        f"eval per 1K requests {change_text(pair.cost_per_1k, usd)}, train {change_text(pair.cost_train, usd)}",
    ]
    if pair.errors:
        parts.append("ERRORS: " + "; ".join(pair.errors))
    if pair.regressions:
        parts.append("REGRESSION: " + "; ".join(pair.regressions))
    if pair.flags:
        parts.append("flags: " + "; ".join(pair.flags))
    return " | ".join(parts)
