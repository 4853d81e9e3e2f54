"""OpenAI token counts, offline: OpenAI's own BPE encodings (cl100k_base, o200k_base) from the `bpe-openai` package.

`tiktoken` downloads its encoding files on first use, which fails without network; `bpe-openai` ships them. A chat is
counted the way OpenAI's cookbook counts chat fine-tuning data ("Data preparation and analysis for chat model
fine-tuning", simplified from "How to count tokens with tiktoken"): every message costs 3 tokens of framing plus the
tokens of its role and content (a `name` costs one more), and every conversation 3 more.

Calibration against a real bill: on the seed's ViGGO training file (5,103 three-message chats, byte-identical to the
rows ftbench builds) this formula gives 1,085,690 tokens per epoch; the seed's job recorded trained_tokens 2,150,968
at 2 epochs, i.e. exactly 2 tokens per example fewer. The estimate therefore errs high by about 1%, the safe side
for a cost guard; the recorded cost always uses the job's own `trained_tokens`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

from models.errors import MissingDependencyError, UnknownNameError

TOKENS_PER_MESSAGE = 3
"""Framing around each message (start marker, role separator, end marker)."""
TOKENS_PER_NAME = 1
"""Extra token when a message carries a `name`."""
TOKENS_PER_CONVERSATION = 3
"""Priming of the assistant's reply, counted once per chat."""

# Model-name prefixes -> encoding; the longest matching prefix wins ("gpt-4o" before "gpt-4").
ENCODING_BY_PREFIX = {
    "gpt-3.5": "cl100k_base",
    "gpt-35": "cl100k_base",
    "gpt-4": "cl100k_base",
    "gpt-4o": "o200k_base",
    "gpt-4.1": "o200k_base",
    "gpt-4.5": "o200k_base",
    "gpt-5": "o200k_base",
    "o1": "o200k_base",
    "o3": "o200k_base",
    "o4": "o200k_base",
}


def encoding_for(model: str) -> str:
    """The encoding of an OpenAI model name, snapshot or fine-tuned id.

    >>> encoding_for("gpt-3.5-turbo-0125"), encoding_for("gpt-4o-mini-2024-07-18"), encoding_for("gpt-4.1-nano")
    ('cl100k_base', 'o200k_base', 'o200k_base')
    >>> encoding_for("ft:gpt-4o-mini-2024-07-18:acme::abc123")
    'o200k_base'
    """
    base = model.removeprefix("ft:")
    matches = [prefix for prefix in ENCODING_BY_PREFIX if base.startswith(prefix)]
    if not matches:
        raise UnknownNameError("OpenAI model family", model, ENCODING_BY_PREFIX)
    return ENCODING_BY_PREFIX[max(matches, key=len)]


@functools.cache
def encoder(encoding: str) -> Callable[[str], list[int]]:
    """`encode(text) -> token ids` for an encoding name; special-token text is encoded as plain text, as the API does."""
    try:
        import bpe_openai
    except ImportError as err:
        raise MissingDependencyError(
            "counting OpenAI tokens offline needs the bpe-openai package: pip install 'ftbench[openai]' "
            "(or pip install bpe-openai)."
        ) from err
    if encoding not in bpe_openai.list_encoding_names():
        raise UnknownNameError("encoding", encoding, bpe_openai.list_encoding_names())
    return bpe_openai.get_encoding(encoding).encode_ordinary


def text_tokens(text: str, encoding: str) -> int:
    """Tokens of a plain string.

    >>> text_tokens("tiktoken is great!", "cl100k_base")
    6
    """
    return len(encoder(encoding)(text))


def chat_tokens(messages: Sequence[Mapping[str, str]], encoding: str) -> int:
    """Tokens of one chat (a fine-tuning example, or a request's prompt), counted as OpenAI's cookbook does.

    >>> chat_tokens([{"role": "user", "content": "hello world"}], "cl100k_base")   # 3 + user 1 + content 2 + 3
    9
    """
    encode = encoder(encoding)
    total = TOKENS_PER_CONVERSATION
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if isinstance(value, str):
                total += len(encode(value))
            if key == "name":
                total += TOKENS_PER_NAME
    return total
