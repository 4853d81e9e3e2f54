"""The report's decision section: per task, the candidates (accuracy, training cost, deploy cost per 1K requests at
the SLO, the fixed monthly cost of an always-on instance), the break-even volume of every API candidate against every
self-hosted one, a plot of monthly cost against monthly requests, and the pick at each --volume.

Candidates come from records only:
- a benchmark record (`test_accuracy`) gives accuracy, per-item outcomes and training cost; one priced by tokens is an
  API candidate at its recorded cost per 1K requests;
- a serving record (`test_serving`, kind "serving") of the same pair makes a local model a self-hosted candidate at
  the throughput it sustained within the SLO and the hardware's hourly price;
- an estimate record (`ftbench estimate --json`, kind "estimate") prices an API candidate not run (no key): accuracy
  unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.decision import Candidate, Hosting, Judged, Pick, break_even, judge, pick
from benchmarks.units import usd

Pair = tuple[str, str]


def candidates_from(records: Mapping[Pair, Any], serving: Mapping[Pair, Mapping[str, Any]],
                    estimates: Mapping[Pair, Mapping[str, Any]]) -> tuple[list[Candidate], list[str]]:
    """Every task x model with what its records say, in (task, model) order, and notes on records left unused."""
    found, notes = [], []
    for pair in sorted(set(records) | set(serving) | set(estimates)):
        record, served, estimate = records.get(pair), serving.get(pair), estimates.get(pair)
        if served is not None and (record is None or not _same_model(record.model_fingerprint,
                                                                    served.get("model_fingerprint"))):
            why = "no benchmark record of it" if record is None else "its model is not the benchmarked one"
            notes.append(f"serving record of {pair[0]} x {pair[1]} not used: {why}")
            served = None
        if record is not None:
            found.append(_from_record(record, served))
        elif estimate is not None:
            found.append(_from_estimate(estimate))
    return found, notes


IDENTITY = ("base", "weights", "adapter")
"""Fingerprint fields that name the model (newer records add dtype, device, ... which older ones lack)."""


def _same_model(benchmarked: Mapping[str, Any] | None, served: Mapping[str, Any] | None) -> bool:
    shared = [key for key in IDENTITY if key in (benchmarked or {}) and key in (served or {})]
    return bool(shared) and all(benchmarked[key] == served[key] for key in shared)


def _from_record(record, served: Mapping[str, Any] | None) -> Candidate:
    headline = record.headline or ""
    items = {item: outcomes.get(headline) for item, outcomes in record.items.items()}
    by_tokens = str((record.cost.pricing or {}).get("eval", "")).startswith("tokens:")
    per_1k = record.cost.per_1k_requests
    source = f"{record.task}-{record.model} (benchmark record)"
    hosting = _hosting(served) if served is not None else None
    if served is not None:
        source += " + its serving record"
    return Candidate(record.task, record.model, record.accuracy, tuple(record.ci95) if record.ci95 else None,
                     record.cost.train, per_request_usd=per_1k / 1000 if by_tokens and per_1k is not None else None,
                     hosting=None if by_tokens else hosting, items=items, source=source,
                     data_fingerprint=record.data.fingerprint)


def _hosting(served: Mapping[str, Any]) -> Hosting | None:
    best, cost = served.get("sustainable"), served.get("cost_usd") or {}
    if not best or cost.get("hourly") is None or not best.get("requests_per_s"):
        return None
    return Hosting(hourly_usd=cost["hourly"], capacity_per_hour=best["requests_per_s"] * 3600,
                   slo_s=served["latency_slo_s"], concurrency=best["concurrency"])


def _from_estimate(estimate: Mapping[str, Any]) -> Candidate:
    cost = estimate["cost_usd"]
    return Candidate(estimate["task"], estimate["model"], None, None, cost["train"],
                     per_request_usd=cost["per_1k_requests"] / 1000,
                     source=f"{estimate['task']}-{estimate['model']} (estimate record, prices of "
                            f"{cost.get('prices_date')})")


def render_decision(candidates: Sequence[Candidate], volumes: Sequence[float], months: float,
                    plots: Mapping[str, str] | None = None, notes: Sequence[str] = ()) -> str:
    """The Markdown section; `plots` maps a task to its figure's file name."""
    lines = ["## Which to pick", "",
             f"Monthly cost = training / {months:g} months + either the API's price per request x requests, or "
             f"always-on instances x hourly price x 730 h (one instance serves what it sustained within the latency "
             f"SLO). Eligible: not significantly less accurate than the most accurate candidate (paired test on the "
             f"same items, p < 0.05); unknown accuracy is not judged.", "",
             *(f"Note: {note}." for note in notes), *([""] if notes else [])]
    for task in sorted({c.task for c in candidates}):
        group = [c for c in candidates if c.task == task]
        judged = judge(group)
        lines += [f"### {task}", "", *_candidate_table(judged), ""]
        lines += _break_evens(group, months)
        if plots and task in plots:
            lines += [f"![monthly cost against monthly requests, {task}]({plots[task]})", ""]
        lines += [_pick_line(pick(judged, v, months)) for v in volumes] + [""]
    return "\n".join(lines)


def _candidate_table(judged: Sequence[Judged]) -> list[str]:
    rows = ["| model | accuracy (95% CI) | train | deploy / 1K requests | always-on / month | eligible | from |",
            "|---|---|---|---|---|---|---|"]
    for j in judged:
        c = j.candidate
        accuracy = "unknown" if c.accuracy is None else f"{c.accuracy:.1%}" + (
            f" ({c.ci95[0]:.1%}-{c.ci95[1]:.1%})" if c.ci95 else "")
        if c.hosting is not None:
            deploy = f"{usd(c.hosting.usd_per_1k)} at p95 <= {c.hosting.slo_s:g} s, {c.hosting.concurrency} in flight"
            fixed = usd(c.hosting.fixed_monthly_usd)
        elif c.per_request_usd is not None:
            deploy, fixed = f"{usd(c.per_request_usd * 1000)} (API tokens)", "-"
        else:
            deploy, fixed = "unknown (no serving record: pytest benchmarks --run-serving)", "unknown"
        rows.append(f"| {c.model} | {accuracy} | {usd(c.train_usd)} | {deploy} | {fixed} | "
                    f"{'yes' if j.eligible else 'no'}: {j.why} | {c.source} |")
    return rows


def _break_evens(group: Sequence[Candidate], months: float) -> list[str]:
    apis = [c for c in group if c.per_request_usd is not None]
    hosted = [c for c in group if c.hosting is not None]
    if not apis or not hosted:
        return []
    lines = ["Break-even (monthly volumes at which self-hosting costs no more than the API):", ""]
    for a in apis:
        for h in hosted:
            lines.append(f"- {h.model} vs {a.model}: {_break_even_text(a, h, months)}")
    return lines + [""]


def _break_even_text(api: Candidate, hosted: Candidate, months: float) -> str:
    if api.train_usd is None or hosted.train_usd is None:
        return "unknown (a training cost is unknown)"
    found = break_even(api, hosted, months)
    if found is None:
        return "never: the API costs less at every volume"
    until = "" if found.end is None else f" up to {found.end:,.0f}"
    return f"from {found.start:,.0f}{until} requests/month"


def _pick_line(chosen: Pick) -> str:
    if chosen.candidate is None:
        return f"- At {chosen.volume:,.0f} requests/month: no pick ({chosen.why})."
    return (f"- **At {chosen.volume:,.0f} requests/month: {chosen.candidate.model}**, {usd(chosen.monthly_usd)}"
            f"/month ({chosen.why}).")


def plot_monthly_cost(candidates: Sequence[Candidate], task: str, months: float, path: Path, figure_factory,
                      save) -> None:
    """Monthly cost against monthly requests, log-log, one line per candidate with a known cost; the label carries
    its accuracy."""
    group = [c for c in candidates if c.task == task and c.monthly_usd(1, months) is not None]
    volumes = [10 ** (k / 20) for k in range(40, 181)]  # 100 to 1e9 requests a month
    figure = figure_factory(7.0, 4.6)
    ax = figure.subplots()
    for index, c in enumerate(group):
        costs = [max(c.monthly_usd(v, months), 1e-6) for v in volumes]
        accuracy = "accuracy unknown" if c.accuracy is None else f"{c.accuracy:.1%}"
        kind = "self-hosted" if c.self_hosted else "API"
        ax.plot(volumes, costs, color=f"C{index % 10}", label=f"{c.model} ({kind}, {accuracy})",
                drawstyle="steps-post" if c.self_hosted else "default")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("requests per month")
    ax.set_ylabel(f"USD per month (training over {months:g} months)")
    ax.set_title(f"{task}: monthly cost by volume")
    ax.grid(alpha=0.3, which="both")
    if group:
        ax.legend(fontsize=8)
    save(figure, path)


def plot_name(task: str) -> str:
    return f"monthly_cost_{task}.png"


def check_volumes(volumes: Sequence[float], months: float) -> None:
    from models.errors import ConfigError

    bad = [v for v in volumes if not (math.isfinite(v) and v >= 0)]
    if bad or not (math.isfinite(months) and months > 0):
        raise ConfigError(f"--volume needs requests per month >= 0 (got {bad}) and --months a positive number "
                          f"(got {months}).")
