"""Recipe values: every invalid field is refused with its value and what it must be; valid ones round-trip."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import ConfigError
from models.finetune.recipe import RULES, TINY, LoraRecipe
from models.precision import PRECISIONS

NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NOT_A_NUMBER = st.text(max_size=4) | st.none() | st.booleans() | st.lists(st.integers(), max_size=2)
NOT_AN_INT = NOT_A_NUMBER | st.floats()


def integers(low, high=None):
    too_big = st.integers(min_value=high + 1) if high is not None else st.nothing()
    return st.integers(low, high), st.integers(max_value=low - 1) | too_big | NOT_AN_INT


def numbers(low, low_open, high=None):
    """Finite floats (and ints) above `low` (excluded when `low_open`), below `high` (excluded)."""
    valid = st.floats(low, high, exclude_min=low_open, exclude_max=high is not None, allow_nan=False,
                      allow_infinity=False) | st.integers(math.ceil(low) + low_open, 10**6 if high is None else high - 1)
    too_big = st.floats(min_value=high, allow_infinity=False) if high is not None else st.nothing()
    too_small = st.floats(max_value=low, allow_infinity=False).filter(lambda x: x < low or (low_open and x == low))
    return valid, too_small | too_big | NON_FINITE | NOT_A_NUMBER


def choices(allowed):
    other = st.text(max_size=6).filter(lambda s: s not in allowed) | st.integers() | st.booleans() | st.floats()
    return st.sampled_from(allowed), (other if None in allowed else other | st.none())


NAMES = st.text(min_size=1, max_size=8)
FIELDS = {  # name -> (valid values, invalid values)
    "r": integers(1), "alpha": integers(1), "dropout": numbers(0, False, 1),
    "target_modules": (st.lists(NAMES, min_size=1, max_size=4),
                       st.just([]) | NAMES | st.lists(st.integers() | st.just(""), min_size=1, max_size=3)
                       | st.lists(NAMES, max_size=2).map(lambda names: names + [None]) | NOT_A_NUMBER.filter(lambda v: not isinstance(v, list))),
    "learning_rate": numbers(0, True), "weight_decay": numbers(0, False), "warmup_steps": integers(0),
    "epochs": numbers(0, True), "max_steps": integers(1), "batch_size": integers(1), "grad_accum": integers(1),
    "max_length": integers(1), "loss_on_prompt": (st.booleans(), NOT_AN_INT.filter(lambda v: not isinstance(v, bool)) | st.integers()),
    "precision": choices(PRECISIONS), "quantization": choices((None, "8bit", "4bit")), "eval_every": integers(0),
    "early_stopping_patience": integers(0), "seed": integers(0, 2**32 - 1),
}


def test_every_field_has_a_rule_and_a_strategy():
    assert set(RULES) == set(FIELDS) == {f.name for f in dataclasses.fields(LoraRecipe)}


@settings(deadline=None)
@given(st.data(), st.sets(st.sampled_from(sorted(FIELDS)), min_size=1))
def test_any_invalid_value_is_refused_and_named(data, names):
    bad = {name: data.draw(FIELDS[name][1], label=name) for name in sorted(names)}
    with pytest.raises(ConfigError) as error:
        LoraRecipe.from_json(bad)
    for name, value in bad.items():
        assert f"{name} = {value!r}: must be " in str(error.value)
    with pytest.raises(ConfigError):  # building it in code is refused the same way
        LoraRecipe(**bad)


@settings(deadline=None)
@given(st.fixed_dictionaries({}, optional={name: valid for name, (valid, _) in FIELDS.items()}))
def test_any_valid_recipe_round_trips_through_json(values):
    recipe = LoraRecipe.from_json(values)
    assert LoraRecipe.from_json(json.loads(json.dumps(recipe.to_json()))) == recipe
    assert recipe == LoraRecipe(**values)  # ints for float fields are stored as floats either way
    assert json.dumps(recipe.to_json()) == json.dumps(LoraRecipe(**values).to_json())  # so the adapter key agrees


def test_the_listed_cases_name_value_and_range():
    with pytest.raises(ConfigError) as error:
        TINY.with_overrides(["r=-1", "precision=fp8", "dropout=1.5", "learning_rate=NaN", "epochs=Infinity"])
    message = str(error.value)
    for expected in ["r = -1: must be an integer >= 1", "precision = 'fp8': must be one of auto, fp32, bf16, fp16",
                     "dropout = 1.5: must be a number in [0, 1)", "learning_rate = nan: must be a finite number > 0",
                     "epochs = inf: must be a finite number > 0"]:
        assert expected in message


def test_dataclasses_replace_is_checked_too():
    with pytest.raises(ConfigError, match=r"warmup_steps = -3: must be an integer >= 0"):
        dataclasses.replace(TINY, warmup_steps=-3)


@pytest.mark.parametrize("content, kind", [("[1, 2]", "a JSON list"), ("8", "a JSON number"), ('"r=8"', "a JSON string"),
                                           ("null", "JSON null"), ("true", "a JSON boolean")])
def test_a_recipe_file_that_is_not_an_object_is_named(tmp_path, content, kind):
    path = tmp_path / "recipe.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as error:
        LoraRecipe.from_file(path, TINY)
    assert str(error.value) == f'{path} holds {kind}; expected an object of recipe fields such as {{"r": 8}}'


def test_a_recipe_file_names_itself_and_every_invalid_field(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_text('{"r": -1, "dropout": 1.5, "learning_rate": NaN, "weight_decay": -Infinity, "rank": 8}')
    with pytest.raises(ConfigError) as error:
        LoraRecipe.from_file(path, TINY)
    message = str(error.value)
    assert message.startswith(f"invalid LoRA recipe in {path}:")
    for expected in ["unknown recipe fields ['rank']", "r = -1: must be an integer >= 1",
                     "dropout = 1.5: must be a number in [0, 1)", "learning_rate = nan: must be a finite number > 0",
                     "weight_decay = -inf: must be a finite number >= 0"]:
        assert expected in message


def test_an_unreadable_recipe_file_is_a_config_error(tmp_path):
    path = tmp_path / "recipe.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ConfigError, match="cannot read recipe"):
        LoraRecipe.from_file(path)
    with pytest.raises(ConfigError, match="cannot read recipe"):
        LoraRecipe.from_file(tmp_path / "absent.json")
