"""`ftbench diff OLD.json NEW.json`: compare two benchmark runs and gate on regressions.

Both files are pytest-benchmark JSON (written by `--benchmark-json`, `--benchmark-save` or
`--benchmark-autosave`). The ftbench records in them (`extra_info` with `"schema"`, see `benchmarks/record.py`)
are paired by (task, model). For each pair: accuracy old -> new for the headline and every metric, with an exact
paired test on the items both runs scored (never an unpaired comparison); latency p50/p95; cost (train, eval,
per 1K requests). Runs whose data fingerprint, model fingerprint, price table date or hardware differ are flagged,
not silently compared. Pairs present in one file only are listed as added or removed.

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

Every record is checked before anything is compared (`benchmarks.record.validate_record`): each field the diff
reads must have its documented type, and every number must be finite (Python's json reads NaN and Infinity, which
would compare as "no change") and in range. A file with a bad record is refused as a whole, listing every problem.

Exit codes:
    0  no regression (flags, added and removed pairs are reported but do not fail)
    1  at least one regression, and no pair with errors
    2  unusable input: a file that cannot be read, is not JSON (or is nested too deeply to parse), is not
       pytest-benchmark JSON, holds no ftbench record or records of an unknown schema version, holds a malformed
       record (a field of the wrong type, a NaN or infinite number, a value out of range: every one is named
       with its file, pair and field), holds one (task, model) twice; two runs with no pair in common; an
       --output equal to an input; a bad gating option. Nothing is written
    3  at least one pair cannot be judged: the new run has errors, or either run has n = 0 (rerun it when the
       cause is fixed); regressions of other pairs are listed too
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.record import READABLE_SCHEMAS, SCHEMA, errors_of, first_errors, validate_record
from models.errors import ConfigError

EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE, EXIT_ERRORS = 0, 1, 2, 3

EXIT_CODES_HELP = """\
exit codes:
  0  no regression (flags, added and removed pairs are reported but do not fail)
  1  at least one regression under the gating rules, and no pair with errors
  2  unusable input: unreadable, not JSON, not pytest-benchmark JSON, no ftbench record, an unknown record
     schema version, a malformed record (wrong type, NaN/Infinity, out of range: each named by file, pair and
     field), a (task, model) recorded twice, no pair in common, or --output equal to an input; nothing is written
  3  a pair cannot be judged: the new run has errors (failed requests or scorers), or either run has n = 0
     (no item evaluated or scored); fix the cause and rerun
"""

Pair = tuple[str, str]
"""(task, model): how records of two runs are matched."""
LISTED_PROBLEMS = 50
"""Malformed values listed in full per file; a file broken everywhere (every item NaN) gets a count beyond that."""


class DiffInputError(ConfigError):
    """A file or record that `ftbench diff` cannot use; the message names the file and the reason."""


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


# --------------------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Run:
    """One pytest-benchmark file: where it came from and its ftbench records by (task, model)."""

    path: str
    datetime: str | None
    commit: str | None
    records: dict[Pair, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "datetime": self.datetime, "commit": self.commit}


def load_records(path: str | os.PathLike[str]) -> dict[Pair, dict[str, Any]]:
    """The ftbench records of a pytest-benchmark JSON file, keyed by (task, model); raises DiffInputError."""
    return read_run(path).records


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a pytest-benchmark JSON file and check its ftbench records; raises DiffInputError."""
    document = _read_json(Path(path))
    benchmarks = _benchmark_list(document, path)
    commit = document.get("commit_info") or {}
    commit = commit.get("id") if isinstance(commit, dict) else None
    return Run(
        path=str(path),
        datetime=_text_or_none(document.get("datetime")),  # both are only shown: a wrong type is dropped, not fatal
        commit=_text_or_none(commit),
        records=_records_by_pair(benchmarks, path),
    )


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DiffInputError(
            f"{path}: cannot read it ({error}); pass a file written by pytest --benchmark-json"
        ) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DiffInputError(
            f"{path}: not JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
            f"pass a file written by pytest --benchmark-json"
        ) from error
    except RecursionError as error:  # json's parser recurses once per nesting level
        raise DiffInputError(
            f"{path}: JSON nested too deeply to read (about 1000 levels or more; a pytest-benchmark file is under "
            f"10 deep); pass a file written by pytest --benchmark-json"
        ) from error
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise DiffInputError(f"{path}: not readable JSON ({error}); pass a file written by pytest --benchmark-json") \
            from error


def _benchmark_list(document: Any, path: object) -> list[dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("benchmarks"), list):
        raise DiffInputError(
            f"{path}: not pytest-benchmark JSON (no top-level 'benchmarks' list); "
            f"pass a file written by pytest --benchmark-json, --benchmark-save or --benchmark-autosave"
        )
    return [b for b in document["benchmarks"] if isinstance(b, dict)]


def _records_by_pair(benchmarks: list[dict[str, Any]], path: object) -> dict[Pair, dict[str, Any]]:
    records: dict[Pair, dict[str, Any]] = {}
    names: dict[Pair, str] = {}
    problems: list[str] = []
    for benchmark in benchmarks:
        record = benchmark.get("extra_info") or {}
        if not isinstance(record, dict) or "schema" not in record:
            continue  # a plain timing benchmark, not an ftbench record
        name = _text_or_none(benchmark.get("fullname")) or _text_or_none(benchmark.get("name")) or "?"
        _check_schema(record, f"{path}: benchmark {name}")
        pair = record.get("task"), record.get("model")
        found = validate_record(record)
        if found:  # keep going: the message lists every bad record of the file, not the first
            named = all(isinstance(part, str) and part for part in pair)
            where = f"{pair[0]} / {pair[1]}" if named else f"benchmark {name}"  # no pair to name: the test's name
            problems += [f"{path}: {where}: {problem}" for problem in found]
            continue
        if pair in records:
            raise DiffInputError(
                f"{path}: task {pair[0]!r} x model {pair[1]!r} is recorded twice ({names[pair]} and {name}); "
                f"diff one run per file"
            )
        records[pair], names[pair] = record, name
    if problems:
        raise DiffInputError(_malformed(path, problems))
    if not records:
        raise DiffInputError(
            f"{path}: none of its {len(benchmarks)} benchmarks carries an ftbench record (extra_info with 'schema'); "
            f"pass the JSON of a `pytest benchmarks` run"
        )
    return records


def _check_schema(record: dict[str, Any], where: str) -> None:
    """An unknown schema version is refused on its own: its other fields cannot be judged by this version."""
    schema = record["schema"]
    if schema not in READABLE_SCHEMAS:
        shown = repr(schema)[:40] if isinstance(schema, (str, int, float)) else f"of type {type(schema).__name__}"
        raise DiffInputError(
            f"{where}: record schema {shown}, but this ftbench reads schemas "
            f"{', '.join(map(str, READABLE_SCHEMAS))} (it writes {SCHEMA}); "
            f"re-run the benchmarks with this version, or diff with the ftbench version that wrote the file"
        )


def _malformed(path: object, problems: list[str]) -> str:
    listed = problems[:LISTED_PROBLEMS]
    more = len(problems) - len(listed)
    return "\n  ".join([
        f"{path}: {len(problems)} malformed value(s) in its ftbench records, so none of it is used: a record "
        f"holds finite numbers and the types documented in benchmarks/record.py. Rerun the benchmark that wrote it "
        f"(or fix the tool that edited it):",
        *listed,
        *([f"... and {more} more"] if more else []),
    ])


# ------------------------------------------------------------------------------------------------ statistics


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b (old right, new wrong) and c (the reverse).

    Under "no change" each discordant item is a fair coin, so this is a binomial test of min(b, c) in b + c
    draws at p = 0.5 (testing the smaller count makes p(b, c) == p(c, b) exactly, not just up to rounding).

    >>> mcnemar_exact(0, 0)
    1.0
    >>> mcnemar_exact(4, 4)
    1.0
    >>> mcnemar_exact(5, 0), mcnemar_exact(0, 5)
    (0.0625, 0.0625)
    >>> round(mcnemar_exact(1, 9), 4)
    0.0215
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # scipy is heavy; only the diff needs it

    return float(min(1.0, binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue))


@dataclass(frozen=True)
class PairedTest:
    """Items both runs scored, compared one by one. For pass/fail outcomes this is the exact McNemar test;
    for graded outcomes (e.g. a per-item F1) it is the sign test, the same binomial test on "which run did better"."""

    shared: int
    """Items scored (non-null) in both runs."""
    old_better: int
    """b: items where the old run did better (for pass/fail: old right, new wrong)."""
    new_better: int
    """c: items where the new run did better."""
    old_mean: float
    """Old accuracy on the shared items (0..1)."""
    new_mean: float
    """New accuracy on the shared items (0..1)."""
    p_value: float
    """Two-sided exact p-value; 1 when no item changed."""

    @property
    def drop_points(self) -> float:
        """Accuracy lost on the shared items, in percentage points (negative for a gain)."""
        return (self.old_mean - self.new_mean) * 100

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "drop_points": self.drop_points}


def paired_test(old_items: Mapping[str, Any], new_items: Mapping[str, Any], metric: str) -> PairedTest | None:
    """Paired comparison of `metric` on the items both runs scored; None when they share no scored item."""
    pairs = []
    for item_id in sorted(old_items.keys() & new_items.keys()):
        old, new = _outcome(old_items, item_id, metric), _outcome(new_items, item_id, metric)
        if old is not None and new is not None:
            pairs.append((old, new))
    if not pairs:
        return None
    b = sum(old > new for old, new in pairs)
    c = sum(new > old for old, new in pairs)
    return PairedTest(
        shared=len(pairs),
        old_better=b,
        new_better=c,
        old_mean=sum(old for old, _ in pairs) / len(pairs),
        new_mean=sum(new for _, new in pairs) / len(pairs),
        p_value=mcnemar_exact(b, c),
    )


def _outcome(items: Mapping[str, Any], item_id: str, metric: str) -> float | None:
    outcomes = items[item_id]
    value = outcomes.get(metric) if isinstance(outcomes, dict) else None
    if value is None:
        return None  # not scored
    if isinstance(value, (bool, int, float)) and math.isfinite(value):
        return float(value)
    raise DiffInputError(f"item {item_id!r}, metric {metric!r}: outcome {value!r} is not true/false, a number or null")


# --------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Change:
    """One number, old -> new."""

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
        percent = self.delta / abs(self.old) * 100
        return percent if math.isfinite(percent) else None  # 1e300 over 1e-300: never print inf

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


def diff_records(old: dict[str, Any], new: dict[str, Any], rules: GateRules = GateRules()) -> PairDiff:
    """Compare two records of the same (task, model) and apply the gating rules."""
    metric = new.get("metric") or old.get("metric") or "accuracy"
    metrics = tuple(_metric_diff(old, new, name) for name in _metric_names(old, new, metric))
    draft = PairDiff(
        task=str(new.get("task")),
        model=str(new.get("model")),
        metric=metric,
        metrics=metrics,
        latency_p50=_change(old, new, "latency_s", "p50"),
        latency_p95=_change(old, new, "latency_s", "p95"),
        cost_train=_change(old, new, "cost_usd", "train"),
        cost_eval=_change(old, new, "cost_usd", "eval"),
        cost_per_1k=_change(old, new, "cost_usd", "per_1k_requests"),
        error_rate=Change(errors_of(old)["rate"], errors_of(new)["rate"]),
    )
    failures = _error_lines(errors_of(new)) + _nothing_scored(old, "old", metric) + _nothing_scored(new, "new", metric)
    if failures:  # an outage, a broken scorer, an empty run: the numbers describe part of a run or none, not judged
        return replace(draft, errors=failures, flags=_flags(old, new, draft))
    return replace(draft, regressions=_regressions(draft, rules), flags=_flags(old, new, draft))


def _error_lines(errors: dict[str, Any]) -> list[str]:
    if not errors["count"]:
        return []
    return [f"{errors['count']} items failed ({errors['rate']:.1%}): {errors['by_reason']}; "
            f"first: {first_errors(errors)}"]


def _nothing_scored(record: dict[str, Any], side: str, metric: str) -> list[str]:
    """An empty eval set or a headline nobody scored: the paired test would see no item and pass, so say so."""
    if _dig(record, ("data", "n")) == 0:
        return [f"the {side} run evaluated no item (data.n = 0): check --limit and the data split, then rerun it"]
    if _dig(record, ("metrics", metric, "n")) == 0:
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


def _metric_names(old: dict[str, Any], new: dict[str, Any], headline: str) -> list[str]:
    others = (set(old.get("metrics") or {}) | set(new.get("metrics") or {})) - {headline}
    return [headline, *sorted(others)]


def _metric_diff(old: dict[str, Any], new: dict[str, Any], name: str) -> MetricDiff:
    return MetricDiff(
        name=name,
        value=Change(_metric_value(old, name), _metric_value(new, name)),
        paired=paired_test(old.get("items") or {}, new.get("items") or {}, name),
    )


def _metric_value(record: dict[str, Any], name: str) -> float | None:
    entry = (record.get("metrics") or {}).get(name)
    if isinstance(entry, dict) and "value" in entry:
        return _number(entry["value"])
    return _number(record.get("accuracy")) if record.get("metric") == name else None


def _change(old: dict[str, Any], new: dict[str, Any], section: str, key: str) -> Change:
    return Change(_number((old.get(section) or {}).get(key)), _number((new.get(section) or {}).get(key)))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


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
            f"latency p50 rose {_rise(pair.latency_p50, _seconds)} "
            f"(--max-latency-increase {rules.max_latency_increase}%)"
        )
    for label, change in (("eval cost per 1K requests", pair.cost_per_1k), ("train cost", pair.cost_train)):
        if change.rose_above(rules.max_cost_increase):
            found.append(f"{label} rose {_rise(change, _usd)} (--max-cost-increase {rules.max_cost_increase}%)")
    return found


def _rise(change: Change, unit) -> str:
    percent = ("from zero" if change.old == 0 else "beyond float range" if change.percent is None
               else f"{change.percent:+.1f}%")
    return f"{percent}: {unit(change.old)} -> {unit(change.new)}"


def _flags(old: dict[str, Any], new: dict[str, Any], pair: PairDiff) -> list[str]:
    """What differs besides the change under test: reported with the row so nothing is compared silently."""
    flags = []
    if old.get("metric") != new.get("metric"):
        flags.append(f"headline metric differs: {old.get('metric')!r} -> {new.get('metric')!r}")
    for label, path in (
        ("data fingerprint", ("data", "fingerprint")),
        ("price table date (cost_usd.prices_date)", ("cost_usd", "prices_date")),
        ("hardware (machine.hardware)", ("machine", "hardware")),
    ):
        before, after = _dig(old, path), _dig(new, path)
        if before != after:
            flags.append(f"{label} differs: {_short(before)} -> {_short(after)}")
    flags.extend(_model_fingerprint_flags(old.get("model_fingerprint"), new.get("model_fingerprint")))
    flags.extend(_item_flags(old.get("items") or {}, new.get("items") or {}, pair.headline))
    return flags


def _model_fingerprint_flags(old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        details = "; ".join(_differences(old, new))
        return [f"model fingerprint differs in {', '.join(keys)} ({details})"]
    return [f"model fingerprint differs: {_short(old)} -> {_short(new)}"]


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """'key.sub: old -> new' for every leaf that differs, so a recipe change reads as the one knob that moved."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
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


def _dig(record: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _short(value: Any, width: int = 24) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


# ------------------------------------------------------------------------------------------------ formatting


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}s"


def _usd(value: float | None) -> str:
    if value is None:
        return "–"
    return f"${value:,.2f}" if abs(value) >= 1 or value == 0 else f"${value:.3g}"


def _arrow(change: Change, unit, arrow: str = "->", relative: bool = True) -> str:
    text = f"{unit(change.old)} {arrow} {unit(change.new)}"
    if relative and change.percent is not None:
        text += f" ({change.percent:+.1f}%)"
    return text


def _points(metric: MetricDiff) -> str:
    delta = metric.value.delta
    return "–" if delta is None else f"{delta * 100:+.1f} pts"


def _paired_text(test: PairedTest | None) -> str:
    if test is None:
        return "no shared items"
    return f"-{test.old_better}/+{test.new_better} of {test.shared}, p={test.p_value:.3g}"


def format_row(pair: PairDiff) -> str:
    """One line for a pytest failure message: the numbers, then why it regressed and what is flagged."""
    head = pair.headline
    parts = [
        f"{pair.task} / {pair.model}: {pair.metric} {_arrow(head.value, _percent, relative=False)} "
        f"({_points(head)}; paired {_paired_text(head.paired)})",
        f"latency p50 {_arrow(pair.latency_p50, _seconds)}, p95 {_arrow(pair.latency_p95, _seconds)}",
        f"eval per 1K requests {_arrow(pair.cost_per_1k, _usd)}, train {_arrow(pair.cost_train, _usd)}",
    ]
    if pair.errors:
        parts.append("ERRORS: " + "; ".join(pair.errors))
    if pair.regressions:
        parts.append("REGRESSION: " + "; ".join(pair.regressions))
    if pair.flags:
        parts.append("flags: " + "; ".join(pair.flags))
    return " | ".join(parts)


TABLE_HEADER = ("task", "model", "metric", "accuracy", "change", "paired (lost/gained, p)",
                "latency p50", "latency p95", "eval $/1K req", "train $", "errors", "status")


def _cells(pair: PairDiff, arrow: str) -> tuple[str, ...]:
    head = pair.headline
    return (
        pair.task, pair.model, pair.metric,
        _arrow(head.value, _percent, arrow, relative=False), _points(head), _paired_text(head.paired),
        _arrow(pair.latency_p50, _seconds, arrow), _arrow(pair.latency_p95, _seconds, arrow),
        _arrow(pair.cost_per_1k, _usd, arrow), _arrow(pair.cost_train, _usd, arrow),
        _arrow(pair.error_rate, _percent, arrow, relative=False),
        pair.status.upper() if pair.regressions or pair.errors else pair.status,
    )


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_table(result: RunDiff) -> str:
    """The terminal form: a row per pair, a table of every metric, then regressions, flags, added, removed."""
    lines = [f"ftbench diff: {result.verdict}", f"  old: {_run_label(result.old)}",
             f"  new: {_run_label(result.new)}", ""]
    lines += _aligned([TABLE_HEADER, *(_cells(p, "->") for p in result.pairs)])
    metric_rows = [
        (p.task, p.model, m.name, _arrow(m.value, _percent, relative=False), _points(m), _paired_text(m.paired))
        for p in result.pairs for m in p.metrics
    ]
    metric_header = ("task", "model", "metric", "accuracy", "change", "paired (lost/gained, p)")
    lines += ["", *_aligned([metric_header, *metric_rows])]
    lines += _lists(result, bullet="  - ")
    return "\n".join(lines) + "\n"


def format_markdown(result: RunDiff) -> str:
    """For a PR comment: a verdict header, one table, then lists of regressions and flags."""
    icon = "⚠️" if result.errors else "❌" if result.regressions else "✅"
    rules = result.rules
    lines = [
        f"### {icon} ftbench diff: {result.verdict}",
        "",
        f"Old `{_run_label(result.old)}` → new `{_run_label(result.new)}`. "
        f"Gate: accuracy drop > {rules.min_drop} pts "
        f"at p < {rules.alpha} (exact McNemar on shared items), latency p50 > +{rules.max_latency_increase}%, "
        f"cost > +{rules.max_cost_increase}%; a pair with failed items or n = 0 is not judged (ERRORS).",
        "",
        "| " + " | ".join((*TABLE_HEADER, "other metrics")) + " |",
        "|" + "---|" * (len(TABLE_HEADER) + 1),
    ]
    for pair in result.pairs:
        others = "<br>".join(
            f"{m.name} {_arrow(m.value, _percent, '→', relative=False)} ({_points(m)}, {_paired_text(m.paired)})"
            for m in pair.metrics[1:]
        )
        cells = (*_cells(pair, "→"), others or "–")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += _lists(result, bullet="- ", heading="**{}**")
    return "\n".join(lines) + "\n"


def _lists(result: RunDiff, bullet: str, heading: str = "{}") -> list[str]:
    lines = []
    for title, entries in (
        ("Errors (not judged: rerun when the cause is fixed)", result.errors),
        ("Regressions", result.regressions),
        ("Flags (not silently compared)", result.flags),
        ("Added (new run only)", [f"{t} / {m}" for t, m in result.added]),
        ("Removed (old run only)", [f"{t} / {m}" for t, m in result.removed]),
    ):
        if entries:
            lines += ["", heading.format(f"{title}:"), *(bullet + e for e in entries)]
    return lines


def _run_label(run: Run) -> str:
    details = ", ".join(x for x in (run.commit and f"commit {run.commit[:12]}", run.datetime) if x)
    return f"{run.path} ({details})" if details else run.path


def render(result: RunDiff, output_format: str) -> str:
    if output_format == "json":
        return json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n"
    if output_format == "markdown":
        return format_markdown(result)
    return format_table(result)


# ------------------------------------------------------------------------------------------------- file output


@contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path` and rename it over `path` on success: readers never see half a file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    with replacing(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def refuse_overwriting_inputs(
    outputs: Sequence[str | os.PathLike[str]], inputs: Sequence[str | os.PathLike[str]]
) -> None:
    """Raise DiffInputError when an output path is one of the input files (same path, link or hard link)."""
    for output in outputs:
        for source in inputs:
            if _same_file(Path(output), Path(source)):
                raise DiffInputError(f"refusing to write {output}: it is the input file {source}; choose another path")


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ftbench diff OLD NEW`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter  # keep the epilog's exit-code table as written
    parser.epilog = EXIT_CODES_HELP
    parser.add_argument("old", metavar="OLD", type=Path, help="baseline run: pytest-benchmark JSON")
    parser.add_argument("new", metavar="NEW", type=Path, help="run to check: pytest-benchmark JSON")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                        help="table for a terminal, markdown for a PR comment, json for tools (default: %(default)s)")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE",
                        help="write the diff here instead of stdout; never one of the input files")
    rules = parser.add_argument_group("gating rules")
    rules.add_argument("--alpha", type=float, default=GateRules.alpha,
                       help="significance level of the exact McNemar test on shared items (default: %(default)s)")
    rules.add_argument("--min-drop", type=float, default=GateRules.min_drop, metavar="POINTS",
                       help="an accuracy drop must also exceed this many percentage points (default: %(default)s)")
    rules.add_argument("--max-latency-increase", type=float, default=GateRules.max_latency_increase, metavar="PERCENT",
                       help="largest allowed rise of latency p50, in percent (default: %(default)s)")
    rules.add_argument("--max-cost-increase", type=float, default=GateRules.max_cost_increase, metavar="PERCENT",
                       help="largest allowed rise of eval cost per 1K requests and of train cost, in percent "
                            "(default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Run `ftbench diff`; returns the exit code (0 no regression, 1 regression, 2 unusable input, 3 errors)."""
    try:
        rules = GateRules(
            alpha=args.alpha,
            min_drop=args.min_drop,
            max_latency_increase=args.max_latency_increase,
            max_cost_increase=args.max_cost_increase,
        )
        if args.output is not None:
            refuse_overwriting_inputs([args.output], [args.old, args.new])
        result = diff_files(args.old, args.new, rules)
        text = render(result, args.format)
        if args.output is None:
            sys.stdout.write(text)
        else:
            write_atomic(args.output, text)
    except (ConfigError, OSError) as error:
        print(f"ftbench diff: {error}", file=sys.stderr)
        return EXIT_UNUSABLE
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m benchmarks.diff OLD NEW`: the same as `ftbench diff`."""
    parser = argparse.ArgumentParser(prog="ftbench diff", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
