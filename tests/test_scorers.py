"""The scorer registry JSONL tasks pick from: each scorer reports exactly the metrics it declares, whatever the
prediction, and a right answer scores right."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.tasks.base import Example
from benchmarks.tasks.scorers import SCORERS

GOLD = {
    "exact": Example("eval/0", {}, "Paris"),
    "sql": Example("eval/0", {"context": "CREATE TABLE city (name TEXT, population INT)"},
                   "SELECT name FROM city WHERE population > 1000"),
    "mr": Example("eval/0", {}, "inform(name[Tetris], genres[puzzle], rating[good])"),
}


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_the_reference_answer_scores_right_on_every_declared_metric(name):
    score = SCORERS[name].score(GOLD[name], GOLD[name].target)
    assert set(score.outcomes) == set(SCORERS[name].metrics) and not score.errors
    assert all(v is True or v == 1.0 for v in score.outcomes.values()), score


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(SCORERS)), prediction=st.text(max_size=80))
def test_any_prediction_gets_a_verdict_on_exactly_the_declared_metrics(name, prediction):
    score = SCORERS[name].score(GOLD[name], prediction)
    assert set(score.outcomes) == set(SCORERS[name].metrics)
    assert not score.errors  # a bad prediction is wrong, never an error
    assert set(score.reasons) <= set(SCORERS[name].metrics)
