"""Task loaders on the fixtures, on a temporary folder in the seed's layout, and through `datasets` offline."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from benchmarks.data import FIXTURES_DATA, DataSource, resolve_data
from benchmarks.tasks import get_task, training_pairs, chat_rows
from benchmarks.tasks import spider, viggo
from models.errors import ConfigError, DataError, UnknownNameError

FIXTURES = resolve_data("fixtures")


@pytest.mark.parametrize("name, split, minimum", [
    ("spider", "train", 40), ("spider", "val", 30), ("viggo", "train", 40), ("viggo", "test", 30),
])
def test_fixtures_have_enough_rows(name, split, minimum):
    examples = get_task(name).examples(FIXTURES, split)
    assert len(examples) >= minimum
    assert len({e.id for e in examples}) == len(examples)


def test_every_fixture_gold_query_runs_on_its_database():
    from benchmarks.metrics.sql import execute

    for split in ("train", "val"):
        for example in spider.SpiderTask().examples(FIXTURES, split):
            db = spider.database_path(FIXTURES, example.fields["db_id"])
            assert db is not None, example.fields["db_id"]
            result = execute(db, example.target)
            assert result.error is None and result.rows, (example.id, example.target, result.error)


def test_spider_prompt_is_the_seeds_verbatim():
    example = spider.SpiderTask().examples(FIXTURES, "val")[0]
    prompt = spider.SpiderTask().prompt(example)
    assert prompt.text == (
        "You are a powerful text-to-SQL model. Your job is to answer questions about a database. You are given a "
        "question and context regarding one or more tables.\n\nYou must output the SQL query that answers the "
        f"question.\n\n### Input:\n{example.fields['question']}\n\n### Context:\n{example.fields['context']}\n\n"
        "### Response:\n"
    )
    system, user = prompt.messages
    assert system.content.endswith(f"### Context:\n{example.fields['context']}") and user.content == example.fields["question"]


def test_viggo_prompt_matches_the_seed_chat_system_text():
    example = viggo.ViggoTask().examples(FIXTURES, "test")[0]
    prompt = viggo.ViggoTask().prompt(example)
    assert prompt.text.endswith(f"### Target sentence:\n{example.fields['ref']}\n\n### Meaning representation:\n")
    assert prompt.messages[0].content.startswith("Given a target sentence construct the underlying meaning")
    assert "\n" not in prompt.messages[0].content


@pytest.mark.parametrize("name", ["spider", "viggo"])
def test_training_pairs_use_the_evaluation_prompt(name):
    task = get_task(name)
    examples = task.examples(FIXTURES, task.train_split)[:3]
    for example, pair, chat in zip(examples, training_pairs(task, examples), chat_rows(task, examples)):
        assert pair.prompt == task.prompt(example).text and pair.completion == example.target
        assert chat["messages"][-1] == {"role": "assistant", "content": example.target}


@pytest.fixture
def seed_layout(tmp_path):
    """A folder in the seed's layout, built from the fixtures."""
    shutil.copytree(FIXTURES_DATA, tmp_path / "data")
    return tmp_path / "data"


def test_a_folder_in_the_seed_layout_loads(seed_layout):
    source = resolve_data(str(seed_layout))
    assert source.kind == "dir"
    assert len(get_task("spider").examples(source, "val")) == len(get_task("spider").examples(FIXTURES, "val"))
    assert len(get_task("viggo").examples(source, "valid")) > 0


def test_malformed_spider_row_names_file_and_row(seed_layout):
    path = seed_layout / "sql_create_context_spider_intersect" / "spider_create_context_train.json"
    rows = json.loads(path.read_text())
    del rows[3]["answer"]
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"spider_create_context_train\.json, row 3: missing or empty \['answer'\]"):
        get_task("spider").examples(DataSource("dir", seed_layout), "train")


def test_malformed_viggo_row_names_file_and_row(seed_layout):
    path = seed_layout / "viggo" / "train.csv"
    with path.open("a", newline="") as f:
        csv.writer(f).writerow(["not an mr", "a sentence"])
    rows = len(get_task("viggo").examples(FIXTURES, "train"))
    with pytest.raises(DataError, match=rf"train\.csv, row {rows}: not a meaning representation"):
        get_task("viggo").examples(DataSource("dir", seed_layout), "train")


def test_missing_data_path_lists_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="neither 'fixtures', 'hub' nor an existing directory"):
        resolve_data(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="spider data file not found"):
        get_task("spider").examples(DataSource("dir", tmp_path), "val")


def test_unknown_task_lists_the_choices():
    with pytest.raises(UnknownNameError, match="Did you mean 'spider'.*viggo"):
        get_task("spidr")


def test_hub_loader_reads_gem_viggo_fields_offline(tmp_path, monkeypatch):
    """The hub path through `datasets`, pointed at a local folder with GEM/viggo's fields and split names."""
    folder = tmp_path / "gem_viggo"
    folder.mkdir()
    fixture_rows = viggo.ViggoTask().examples(FIXTURES, "test")[:5]
    with (folder / "test.jsonl").open("w") as f:
        for i, e in enumerate(fixture_rows):
            f.write(json.dumps({"gem_id": f"viggo-test-{i}", "meaning_representation": e.target,
                                "target": e.fields["ref"], "references": [e.fields["ref"]]}) + "\n")
    monkeypatch.setattr(viggo, "HUB_ID", str(folder))
    examples = viggo.ViggoTask().examples(DataSource("hub"), "test")
    assert [(e.target, e.fields["ref"]) for e in examples] == [(e.target, e.fields["ref"]) for e in fixture_rows]


def test_hub_failure_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(viggo, "HUB_ID", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="--data fixtures or --data DIR"):
        viggo.ViggoTask().examples(DataSource("hub"), "test")


@pytest.mark.parametrize("kind", ["prompt_completion", "chat"])
def test_jsonl_task_reads_both_openai_formats(kind):
    task = get_task("jsonl", jsonl_folder=FIXTURES_DATA.parent / "jsonl" / kind)
    train, evaluation = task.examples(None, "train"), task.examples(None, "eval")
    assert len(train) >= 40 and len(evaluation) >= 24
    prompt = task.prompt(evaluation[0])
    assert prompt.text and prompt.messages and task.stop == ("\n",)
    assert training_pairs(task, train[:1])[0].prompt == task.prompt(train[0]).text


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    (tmp_path / "eval.jsonl").write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "no completion"}\n')
    with pytest.raises(DataError, match=r"eval\.jsonl, line 2: expected"):
        get_task("jsonl", jsonl_folder=tmp_path)


def test_jsonl_unknown_scorer_lists_choices(tmp_path):
    with pytest.raises(UnknownNameError, match="exact"):
        get_task("jsonl", jsonl_folder=FIXTURES_DATA.parent / "jsonl" / "chat", jsonl_scorer="bleu")


def test_jsonl_mr_scorer_refuses_a_target_that_is_not_an_mr(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"prompt": "a", "completion": "inform(name[A])"}\n')
    (tmp_path / "eval.jsonl").write_text('{"prompt": "a", "completion": "inform(name[A])"}\n{"prompt": "b", "completion": "hello"}\n')
    with pytest.raises(DataError, match=r"eval\.jsonl, line 2: --jsonl-scorer mr needs a meaning representation"):
        get_task("jsonl", jsonl_folder=tmp_path, jsonl_scorer="mr")
