"""ViGGO meaning representations: parser round trips and score properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.metrics import mr
from benchmarks.tasks.scorers import mr_score
from benchmarks.tasks.viggo import ACTS, ATTRIBUTES

values = st.text(alphabet=st.characters(blacklist_characters="[]\n\r", blacklist_categories=("Cs",)), max_size=30).map(str.strip)
slots = st.lists(st.tuples(st.sampled_from(ATTRIBUTES), values), max_size=6, unique_by=lambda s: s[0])
mrs = st.builds(mr.MeaningRepresentation, st.sampled_from(ACTS), slots.map(tuple))


@given(mrs)
def test_format_parse_round_trip(meaning):
    assert mr.parse_mr(meaning.format()) == meaning


@given(mrs, st.randoms())
def test_function_attributes_ignore_order_and_values(meaning, random):
    shuffled = list(meaning.slots)
    random.shuffle(shuffled)
    other = mr.MeaningRepresentation(meaning.act, tuple((a, "changed") for a, _ in shuffled))
    assert mr.function_attributes_match(meaning.format(), other.format())


@given(mrs)
def test_everything_matches_itself(meaning):
    score = mr_score(meaning.format(), meaning.format())
    assert score.outcomes == {"function_attributes": True, "exact": True, "slot_f1": 1.0}


@given(mrs, st.text(max_size=60))
def test_f1_bounded_and_exact_implies_attribute_match(meaning, prediction):
    score = mr_score(meaning.format(), prediction)
    assert 0.0 <= score.outcomes["slot_f1"] <= 1.0
    if score.outcomes["exact"]:
        assert score.outcomes["function_attributes"]


@given(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20))
def test_f1_bounds(tp, extra_pred, extra_gold):
    precision, recall, f = mr.f1(tp, tp + extra_pred, tp + extra_gold)
    assert 0 <= f <= 1 and min(precision, recall) - 1e-12 <= f <= max(precision, recall) + 1e-12


@given(mrs, st.sampled_from(["  ", "\t", " \n "]))
def test_exact_match_whitespace_invariant(meaning, pad):
    assert mr.exact_match(meaning.format(), pad + meaning.format() + pad)


@pytest.mark.parametrize("text", ["", "inform", "inform(name[A]", "inform(name[A] rating[b])", "SELECT * FROM t"])
def test_parse_rejects_non_mrs_with_the_text(text):
    with pytest.raises(mr.MRParseError, match="meaning representation|bad attribute"):
        mr.parse_mr(text)


def test_values_keep_commas_and_parentheses():
    parsed = mr.parse_mr("inform(name[Dirt: Showdown], esrb[E 10+ (for Everyone 10 and Older)], genres[driving/racing, sport])")
    assert dict(parsed.slots)["esrb"] == "E 10+ (for Everyone 10 and Older)"
    assert dict(parsed.slots)["genres"] == "driving/racing, sport"
