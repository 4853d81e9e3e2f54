"""OpenAI token counting offline (bpe-openai): pinned values, properties, and the seed's numbers reproduced."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.tokens import TOKENS_PER_CONVERSATION, TOKENS_PER_MESSAGE, chat_tokens, encoding_for, text_tokens

pytest.importorskip("bpe_openai", reason="token counting needs bpe-openai: pip install 'ftbench[openai]'")

ENCODINGS = ["cl100k_base", "o200k_base"]
SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

role = st.sampled_from(["system", "user", "assistant"])
content = st.text(min_size=0, max_size=80)
message = st.builds(lambda r, c: {"role": r, "content": c}, role, content)
chat = st.lists(message, min_size=1, max_size=5)


@pytest.mark.parametrize("module", ["models.tokens", "models.prediction_cache", "models.openai_api",
                                    "models.finetune.openai_plan"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_pinned_values():
    # OpenAI's cookbook: "tiktoken is great!" is 6 tokens in cl100k_base; "hello world" is [15339, 1917].
    assert text_tokens("tiktoken is great!", "cl100k_base") == 6
    assert text_tokens("hello world", "cl100k_base") == 2
    assert chat_tokens([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello world"},
                        {"role": "assistant", "content": "hi"}], "cl100k_base") == 3 + 3 * 3 + 1 + 4 + 1 + 2 + 1 + 1


def test_encodings_by_model_family():
    assert encoding_for("gpt-3.5-turbo-0125") == "cl100k_base"
    assert encoding_for("gpt-4o-mini-2024-07-18") == encoding_for("gpt-4.1-nano-2025-04-14") == "o200k_base"
    with pytest.raises(KeyError, match="Known OpenAI model familys"):
        encoding_for("llama-3")


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=60, deadline=None)
@given(messages=chat)
def test_count_covers_the_framing(encoding, messages):
    assert chat_tokens(messages, encoding) >= len(messages) * TOKENS_PER_MESSAGE + TOKENS_PER_CONVERSATION


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=40, deadline=None)
@given(first=chat, second=chat)
def test_count_is_additive_over_messages(encoding, first, second):
    # Each message is counted on its own, so a chat's count splits exactly at any message boundary.
    whole = chat_tokens(first + second, encoding)
    assert whole == chat_tokens(first, encoding) + chat_tokens(second, encoding) - TOKENS_PER_CONVERSATION


@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=60, deadline=None)
@given(messages=chat, extra=st.text(min_size=1, max_size=40), index=st.integers(min_value=0))
def test_count_grows_when_content_grows(encoding, messages, extra, index):
    i = index % len(messages)
    longer = [dict(m) for m in messages]
    longer[i]["content"] += extra
    assert chat_tokens(longer, encoding) >= chat_tokens(messages, encoding)
    assert chat_tokens(longer, encoding) <= chat_tokens(messages, encoding) + text_tokens(extra, encoding) + 1


@pytest.mark.skipif(not (SEED_DATA / "viggo" / "train.csv").is_file(), reason=f"the seed's data is not at {SEED_DATA}")
def test_seed_viggo_bill_reproduced():
    """The rows ftbench builds are the seed's training file; the count matches its real job to 2 tokens/example."""
    from benchmarks.data import resolve_data
    from benchmarks.tasks import chat_rows, get_task
    from models.finetune.openai_plan import jsonl_bytes

    task = get_task("viggo")
    rows = chat_rows(task, task.examples(resolve_data(str(SEED_DATA)), "train"))
    assert len(jsonl_bytes(rows)) == 5_194_070  # byte size of the seed's train_oai_format.jsonl
    tokens = sum(chat_tokens(r["messages"], "cl100k_base") for r in rows)
    assert tokens == 1_085_690
    assert 2 * (tokens - 2 * len(rows)) == 2_150_968  # the seed job's trained_tokens at 2 epochs
