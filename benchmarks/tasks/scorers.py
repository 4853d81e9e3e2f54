"""Item scorers: one prediction against its reference, as a `Score`. Built-in tasks call theirs directly; a JSONL task
picks one by name (`--jsonl-scorer`), so a new scorer is a function plus a line in SCORERS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.metrics import mr
from benchmarks.tasks.base import Example, Score


def exact_score(gold: str, prediction: str) -> Score:
    """Exact match after whitespace and case normalization."""
    return Score({"exact": mr.exact_match(gold, prediction)})


def mr_score(gold: str, prediction: str) -> Score:
    """Outcomes of one meaning-representation prediction; slot_f1 is a per-item float, the others are booleans."""
    parsed = mr.try_parse_mr(prediction)
    reasons = {} if parsed else {"function_attributes": f"not an MR: {prediction[:80]!r}"}
    return Score(
        outcomes={
            "function_attributes": mr.function_attributes_match(gold, prediction),
            "exact": mr.exact_match(gold, prediction),
            "slot_f1": mr.f1(*mr.slot_counts(gold, prediction))[2],
        },
        reasons=reasons,
    )


def sql_score(gold: str, prediction: str, *, db_path: Path | None, context: str | None) -> Score:
    """Every SQL metric of one item as a Score: verdicts as outcomes and reasons, MetricErrors as errors. The one SQL
    scoring path of ftbench (Spider rows, JSONL rows)."""
    from benchmarks.metrics.sql import MetricError, Verdict, score_sql

    outcomes = score_sql(gold, prediction, db_path=db_path, context=context)  # never raises
    verdicts = {m: v for m, v in outcomes.items() if isinstance(v, Verdict)}
    return Score(
        outcomes={m: (verdicts[m].correct if m in verdicts else None) for m in outcomes},
        reasons={m: v.reason for m, v in verdicts.items() if v.reason},
        errors={m: v.reason for m, v in outcomes.items() if isinstance(v, MetricError)},
    )


def _sql_without_database(example: Example, prediction: str) -> Score:
    """A JSONL row has no database: scored on its schema `context` only, and `execution` is not reported."""
    score = sql_score(example.target, prediction, db_path=None, context=example.fields.get("context"))
    return Score(*({m: v for m, v in part.items() if m != "execution"}
                   for part in (score.outcomes, score.reasons, score.errors)))


@dataclass(frozen=True)
class Scorer:
    metrics: tuple[str, ...]
    """The metrics it reports; the first is the headline."""
    score: Callable[[Example, str], Score]


SCORERS: dict[str, Scorer] = {
    "exact": Scorer(("exact",), lambda e, p: exact_score(e.target, p)),
    "sql": Scorer(("execution_synth", "structural", "exact"), _sql_without_database),
    "mr": Scorer(("function_attributes", "exact", "slot_f1"), lambda e, p: mr_score(e.target, p)),
}
