"""The report of one or more runs: the comparison as Markdown and two PNG figures (`ftbench report`).

Reads the ftbench records of one or more pytest-benchmark JSON files and writes into a folder:
    report.md             comparison table (accuracy with its 95% interval, train cost, eval cost per 1K requests,
                          latency p50/p95, n) and a per-metric table
    accuracy_vs_cost.png  accuracy against total cost (train + eval per 1K requests), one panel per task
    cost_breakdown.png    stacked bars: training vs inference per 1K requests, per task and model

Figures need matplotlib (`pip install 'ftbench[plots]'`); without plots the Markdown is written alone.
Every file is written under a temporary name and renamed, so a reader never sees half a file.

Every record is checked first (`benchmarks/runs.py`, as in `ftbench diff`): a file holding a field of the wrong
type or a NaN or infinite number is refused, naming file, pair, field and value, and nothing is written.
So the report never shows nan or inf; a value that is not measured (null) shows as "–".
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.record import MachineInfo, MetricSummary, Record, is_finite_number
from benchmarks.runs import Run, read_run, refuse_overwriting_inputs
from benchmarks.stats import wilson_interval
from benchmarks.units import percent, seconds, usd
from models.errors import MissingDependencyError
from models.files import replacing, write_atomic

REPORT_NAME, SCATTER_NAME, BARS_NAME = "report.md", "accuracy_vs_cost.png", "cost_breakdown.png"
DEFAULT_MONTHS = 12.0
"""Months over which the decision section spreads the training cost."""


@dataclass(frozen=True)
class MetricRow:
    """One metric of one record."""

    name: str
    value: float | None
    ci95: tuple[float, float] | None
    correct: int | None
    n: int | None


@dataclass(frozen=True)
class Entry:
    """One (run, task, model) record, reduced to what the report shows."""

    run: str
    """The run's label: its file name (empty when the report has one run)."""
    task: str
    model: str
    metric: str
    accuracy: float | None
    ci95: tuple[float, float] | None
    n: int | None
    train_usd: float | None
    eval_per_1k_usd: float | None
    p50_s: float | None
    p95_s: float | None
    metrics: tuple[MetricRow, ...]
    train_precision: str | None = None
    """The precision a LoRA adapter was trained in (resolved from 'auto'); None for base and API models."""
    machine: str = ""
    """Hardware and what precision 'auto' resolved to there (records before the precision rule: hardware only)."""
    errors: int = 0
    """Items that got no answer or no score (their accuracy leaves them out)."""
    error_reasons: str = ""
    """The record's errors by reason, e.g. "http 503 after 6 attempts: 5"."""

    @property
    def label(self) -> str:
        """The model, with the run when several runs are compared."""
        return f"{self.model} ({self.run})" if self.run else self.model

    @property
    def total_cost_usd(self) -> float:
        """Train cost plus eval cost per 1K requests: what the first 1K requests cost, the seed's comparison."""
        return (self.train_usd or 0.0) + (self.eval_per_1k_usd or 0.0)


# ----------------------------------------------------------------------------------------------- reading


def entries_from(paths: Sequence[str | os.PathLike[str]]) -> list[Entry]:
    """Every record of every file, labelled by file when there are several; raises DiffInputError on bad input."""
    return _entries([read_run(p) for p in paths])


def _entries(runs: Sequence[Run]) -> list[Entry]:
    labels = _run_labels(runs)
    entries = [_entry(label, record) for run, label in zip(runs, labels) for record in run.records.values()]
    return sorted(entries, key=lambda e: (e.task, e.model, e.run))


def _run_labels(runs: Sequence[Run]) -> list[str]:
    if len(runs) == 1:
        return [""]
    names = [Path(r.path).stem for r in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{i}:{name}" for i, name in enumerate(names, 1)]  # same stems from different folders


def _entry(run: str, record: Record) -> Entry:
    metrics = tuple(_metric_row(name, m) for name, m in sorted(record.metrics.items()))
    headline = next((m for m in metrics if m.name == record.headline), None)
    return Entry(
        run=run,
        task=record.task,
        model=record.model,
        metric=str(record.headline),
        accuracy=_number(record.accuracy),
        ci95=_interval(record.ci95) or (headline.ci95 if headline else None),
        n=record.data.n or (headline.n if headline else None),
        train_usd=_number(record.cost.train),
        eval_per_1k_usd=_number(record.cost.per_1k_requests),
        p50_s=_number(record.latency.p50),
        p95_s=_number(record.latency.p95),
        metrics=metrics,
        train_precision=(record.training.precision if record.training is not None else None) or None,
        machine=_machine(record.machine),
        errors=record.errors.count,
        error_reasons=", ".join(f"{reason}: {count}" for reason, count in record.errors.by_reason.items()),
    )


def _machine(machine: MachineInfo) -> str:
    auto = f" (precision auto -> {machine.precision_auto})" if machine.precision_auto else ""
    return f"{machine.hardware or 'unknown hardware'}{auto}"


def _metric_row(name: str, metric: MetricSummary) -> MetricRow:
    correct, n = metric.correct, metric.n
    counted = isinstance(correct, int) and isinstance(n, int) and 0 <= correct <= n
    return MetricRow(
        name=name,
        value=_number(metric.value),
        ci95=_interval(metric.ci95) or (wilson_interval(correct, n) if counted else None),
        correct=correct if counted else None,
        n=n if counted else None,
    )


def _number(value: Any) -> float | None:
    return float(value) if is_finite_number(value) else None  # records are validated; this keeps nan off the page


def _interval(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_number(v) is not None for v in value):
        return float(value[0]), float(value[1])
    return None


# ---------------------------------------------------------------------------------------------- Markdown


def _with_interval(value: float | None, ci95: tuple[float, float] | None) -> str:
    return percent(value) if ci95 is None else f"{percent(value)} [{ci95[0]:.1%}, {ci95[1]:.1%}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]


def render_markdown(entries: Sequence[Entry], runs: Sequence[str], plots: bool = True) -> str:
    """The report: the comparison table, the per-metric table and, when drawn, the figures."""
    several = any(e.run for e in entries)
    lead = ("run",) if several else ()
    comparison = _table(
        (*lead, "task", "model", "metric", "accuracy [95% CI]", "train cost", "eval cost / 1K requests",
         "latency p50 / p95", "n"),
        [((e.run,) if several else ()) + (e.task, e.model, e.metric, _with_interval(e.accuracy, e.ci95),
          usd(e.train_usd) + (f" ({e.train_precision})" if e.train_precision else ""), usd(e.eval_per_1k_usd),
          f"{seconds(e.p50_s)} / {seconds(e.p95_s)}",
          ("–" if e.n is None else str(e.n)) + (f" ({e.errors} errors)" if e.errors else "")) for e in entries],
    )
    failed = [f"- {e.task} / {e.label}: {e.errors} items failed, not scored ({e.error_reasons})"
              for e in entries if e.errors]
    per_metric = _table(
        (*lead, "task", "model", "metric", "value [95% CI]", "correct / n"),
        [((e.run,) if several else ()) + (e.task, e.model, m.name, _with_interval(m.value, m.ci95),
          "–" if m.n is None else f"{m.correct} / {m.n}") for e in entries for m in e.metrics],
    )
    machines = sorted({e.machine for e in entries if e.machine})
    lines = ["# ftbench report", "", "Runs: " + ", ".join(f"`{r}`" for r in runs), "",
             *(["Machines: " + "; ".join(machines), ""] if machines else []),
             "## Comparison", "", *comparison, "",
             "Latency is per example; eval cost is per 1K requests at the recorded price table.", "",
             *(["**Errors** (accuracy covers the answered items only):", *failed, ""] if failed else []),
             "## Every metric", "", *per_metric]
    if plots:
        lines += ["", "## Figures", "", f"![Accuracy vs total cost]({SCATTER_NAME})", "",
                  f"![Training vs inference cost]({BARS_NAME})"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- figures


def _figure(width: float, height: float):
    """A matplotlib Figure on the Agg canvas: no pyplot, so no global backend state and no display needed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise MissingDependencyError(
            f"ftbench report draws its figures with matplotlib, which is not installed ({error}); "
            f"run: pip install 'ftbench[plots]' (or pass --no-plots for the Markdown alone)"
        ) from error
    figure = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, path: Path) -> None:
    with replacing(path) as temporary:
        figure.savefig(temporary, format="png")


def plot_accuracy_vs_cost(entries: Sequence[Entry], path: Path) -> None:
    """Accuracy (with its 95% interval) against train + eval-per-1K cost; one panel per task, one marker per model."""
    tasks = sorted({e.task for e in entries})
    labels = sorted({e.label for e in entries})
    markers = "osD^vP*Xph<>"
    figure = _figure(4.6 * len(tasks) + 1.8, 4.2)
    axes = figure.subplots(1, len(tasks), sharey=True, squeeze=False)[0]
    for ax, task in zip(axes, tasks):
        for entry in (e for e in entries if e.task == task and e.accuracy is not None):
            index = labels.index(entry.label)
            low, high = entry.ci95 or (entry.accuracy, entry.accuracy)
            ax.errorbar(entry.total_cost_usd, entry.accuracy * 100,
                        yerr=[[max(0.0, entry.accuracy - low) * 100], [max(0.0, high - entry.accuracy) * 100]],
                        fmt=markers[index % len(markers)], color=f"C{index % 10}", capsize=4, markersize=8,
                        label=entry.label)
            ax.annotate(entry.label, (entry.total_cost_usd, entry.accuracy * 100), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        ax.set_title(task)
        ax.set_xlabel("total cost, USD (train + eval per 1K requests)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.2)
    axes[0].set_ylabel("accuracy, % (95% interval)")
    handles = {h.get_label(): h for ax in axes for h in ax.get_legend_handles_labels()[0]}
    if handles:
        figure.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8)
    figure.suptitle("Accuracy vs cost")
    _save_png(figure, path)


def plot_cost_breakdown(entries: Sequence[Entry], path: Path) -> None:
    """Stacked bars per task and model: the training cost, then inference for 1K requests on top."""
    names = [f"{e.task}\n{e.label}" for e in entries]
    train = [e.train_usd or 0.0 for e in entries]
    inference = [e.eval_per_1k_usd or 0.0 for e in entries]
    figure = _figure(max(5.0, 1.1 * len(entries) + 2), 4.4)
    ax = figure.subplots()
    positions = range(len(entries))
    ax.bar(positions, train, color="C0", label="training")
    ax.bar(positions, inference, bottom=train, color="C1", label="inference per 1K requests")
    for x, total in zip(positions, (t + i for t, i in zip(train, inference))):
        ax.annotate(usd(total), (x, total), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(list(positions), names, fontsize=8, rotation=25, ha="right")  # long model names must not overlap
    ax.set_ylabel("USD")
    ax.set_title("Cost: training vs inference (per 1K requests)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save_png(figure, path)


# ---------------------------------------------------------------------------------------------------- files


def write_report(paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], plots: bool = True,
                 volumes: Sequence[float] = (), months: float = DEFAULT_MONTHS) -> str:
    """Write report.md (and the figures) into `out`; returns the Markdown. Raises FtbenchError on bad input.

    The decision section (benchmarks/decision_report.py) comes when the runs hold serving or estimate records, or
    when `volumes` (requests per month) ask for a pick."""
    from benchmarks import decision_report as decision

    decision.check_volumes(volumes, months)
    out = Path(out)
    runs = [read_run(p) for p in paths]
    entries = _entries(runs)
    candidates, notes = _candidates(runs) if volumes or any(r.serving or r.estimates for r in runs) else ([], [])
    cost_plots = {task: decision.plot_name(task) for task in sorted({c.task for c in candidates})} if plots else {}
    figures = plots and bool(entries)  # estimate or serving records alone have no accuracy to plot
    targets = [out / REPORT_NAME, *([out / SCATTER_NAME, out / BARS_NAME] if figures else []),
               *(out / name for name in cost_plots.values())]
    refuse_overwriting_inputs(targets, paths)
    markdown = render_markdown(entries, [str(p) for p in paths], figures)
    if candidates:
        markdown += "\n" + decision.render_decision(candidates, volumes, months, cost_plots, notes)
    out.mkdir(parents=True, exist_ok=True)
    if figures:  # figures first: a missing matplotlib then leaves nothing half-written
        plot_accuracy_vs_cost(entries, out / SCATTER_NAME)
        plot_cost_breakdown(entries, out / BARS_NAME)
    for task, name in cost_plots.items():
        decision.plot_monthly_cost(candidates, task, months, out / name, _figure, _save_png)
    write_atomic(out / REPORT_NAME, markdown)
    return markdown


def _candidates(runs: Sequence[Run]):
    """The decision's candidates from every file's records; for a pair in several files, the last file's."""
    from benchmarks.decision_report import candidates_from

    records, serving, estimates = {}, {}, {}
    for run in runs:
        records |= run.records
        serving |= {pair: r for pair, r in run.serving.items() if not r.get("failure")}  # a failed run proves nothing
        estimates |= run.estimates
    return candidates_from(records, serving, estimates)
