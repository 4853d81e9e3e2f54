"""ViGGO meaning representations: parse, format, and the three scores (exact, function + attributes, slot F1).

An MR is `act(attr[value], attr[value], ...)`, e.g.
`verify_attribute(name[Little Big Adventure], rating[average], platforms[PlayStation])`. Values may hold commas
and parentheses (`esrb[E 10+ (for Everyone 10 and Older)]`), never square brackets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MR = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.DOTALL)
_SLOT = re.compile(r"\s*([A-Za-z_]+)\s*\[([^\[\]]*)\]\s*(?:,|$)")


@dataclass(frozen=True)
class MeaningRepresentation:
    act: str
    """The dialogue act (function name), e.g. 'inform'."""
    slots: tuple[tuple[str, str], ...]
    """(attribute, value) pairs in the order written."""

    @property
    def attributes(self) -> frozenset[str]:
        return frozenset(attr for attr, _ in self.slots)

    def format(self) -> str:
        """Canonical text: `act(a[v], b[w])`.

        >>> parse_mr("inform( name[X] ,rating[good])").format()
        'inform(name[X], rating[good])'
        """
        return f"{self.act}({', '.join(f'{a}[{v}]' for a, v in self.slots)})"


class MRParseError(ValueError):
    """Text that is not an MR."""


def parse_mr(text: str) -> MeaningRepresentation:
    """Parse one MR; raise MRParseError naming the text when it is not one.

    >>> parse_mr("give_opinion(name[SpellForce 3], rating[poor], genres[real-time strategy, role-playing])").slots
    (('name', 'SpellForce 3'), ('rating', 'poor'), ('genres', 'real-time strategy, role-playing'))
    >>> parse_mr("request(specifier[])").slots
    (('specifier', ''),)
    """
    match = _MR.match(text)
    if not match:
        raise MRParseError(f"not a meaning representation (expected 'act(attr[value], ...)'): {text!r}")
    act, body = match.groups()
    slots, position = [], 0
    while position < len(body.rstrip()):
        slot = _SLOT.match(body, position)
        if not slot:
            raise MRParseError(f"bad attribute list at {body[position:]!r} in {text!r}")
        slots.append((slot.group(1), slot.group(2).strip()))
        position = slot.end()
    return MeaningRepresentation(act, tuple(slots))


def try_parse_mr(text: str) -> MeaningRepresentation | None:
    """The parsed MR, or None when `text` is not one (a prediction may be anything)."""
    try:
        return parse_mr(text)
    except MRParseError:
        return None


def _normalize(text: str) -> str:
    return " ".join(text.split())


def exact_match(gold: str, pred: str) -> bool:
    """String equality up to surrounding and repeated whitespace (the seed's 'exact match').

    >>> exact_match("inform(name[A])", " inform(name[A]) ")
    True
    """
    return _normalize(gold) == _normalize(pred)


def function_attributes_match(gold: str, pred: str) -> bool:
    """Same dialogue act and the same set of attributes, in any order, values ignored (Anyscale's ViGGO score).

    >>> function_attributes_match("inform(name[A], rating[good])", "inform(rating[poor], name[B])")
    True
    >>> function_attributes_match("inform(name[A])", "confirm(name[A])")
    False
    """
    g, p = parse_mr(gold), try_parse_mr(pred)
    return p is not None and g.act == p.act and g.attributes == p.attributes


def slot_counts(gold: str, pred: str) -> tuple[int, int, int]:
    """(true positives, predicted, gold) over (attribute, value) slots, values compared case-insensitively.

    An unparsable prediction predicts no slot.

    >>> slot_counts("inform(name[A], rating[good])", "inform(name[a], rating[poor], genres[x])")
    (1, 3, 2)
    """
    gold_slots = {(a, v.lower()) for a, v in parse_mr(gold).slots}
    parsed = try_parse_mr(pred)
    pred_slots = {(a, v.lower()) for a, v in parsed.slots} if parsed else set()
    return len(gold_slots & pred_slots), len(pred_slots), len(gold_slots)


def f1(true_positives: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1; an empty prediction for an empty gold scores 1.

    >>> f1(1, 3, 2)
    (0.3333333333333333, 0.5, 0.4)
    """
    if predicted == gold == 0:
        return (1.0, 1.0, 1.0)
    precision = true_positives / predicted if predicted else 0.0
    recall = true_positives / gold if gold else 0.0
    score = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return (precision, recall, score)
