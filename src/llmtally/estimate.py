"""Token estimates for calls whose provider returned no usage (a stream without usage, a cut stream).

Two counters, chosen once per process:

* tiktoken, when it is installed *and* its encoding file is already in tiktoken's cache on disk with
  the published checksum. llmtally never downloads it: tiktoken would fetch a missing or corrupt
  file from the internet, so that case falls through to the heuristic.
* a heuristic otherwise: ``ceil(ascii_chars / 4) + non_ascii_chars`` (about four characters per token
  for English text; CJK and other non-Latin scripts cost about one token per character).

Chat prompts add OpenAI's documented framing: 3 tokens per message plus 3 priming the reply.
Every estimate yields a :class:`~llmtally.usage.Usage` with ``estimated=True``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
from collections.abc import Iterable
from typing import Any, Protocol

from llmtally.usage import Usage

TOKENS_PER_MESSAGE = 3
REPLY_PRIMING_TOKENS = 3

# tiktoken's published encoding files and their SHA-256 (tiktoken_ext/openai_public.py).
_ENCODINGS = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
# Model families still on cl100k; everything newer (gpt-4o, gpt-4.1, gpt-5, o-series) is o200k.
_CL100K_PREFIXES = ("gpt-4-", "gpt-3.5", "gpt-35", "text-embedding-")


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class HeuristicCounter:
    name = "heuristic"

    def count(self, text: str) -> int:
        return heuristic_tokens(text)


def heuristic_tokens(text: str) -> int:
    if not text:
        return 0
    if text.isascii():
        return -(-len(text) // 4)
    non_ascii = sum(1 for ch in text if ord(ch) > 127)
    return -(-(len(text) - non_ascii) // 4) + non_ascii


def tokens_from_chars(ascii_chars: int, non_ascii_chars: int = 0) -> int:
    """The heuristic from character counts alone (what a stream wrapper keeps when content is off)."""
    return -(-max(ascii_chars, 0) // 4) + max(non_ascii_chars, 0)


class _TiktokenCounter:
    def __init__(self, name: str, encoding: Any) -> None:
        self.name = f"tiktoken:{name}"
        self._encoding = encoding

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))


def tiktoken_cache_path(encoding: str) -> str | None:
    """Where tiktoken caches ``encoding`` (its own rule), or None when caching is off/unknown."""
    if encoding not in _ENCODINGS:
        return None
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.environ.get("DATA_GYM_CACHE_DIR")
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if cache_dir == "":
        return None
    return os.path.join(cache_dir, hashlib.sha1(_ENCODINGS[encoding][0].encode()).hexdigest())


def offline_tiktoken(encoding: str) -> TokenCounter | None:
    """A tiktoken counter if the encoding is usable without any network access, else None."""
    if importlib.util.find_spec("tiktoken") is None:
        return None
    path = tiktoken_cache_path(encoding)
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != _ENCODINGS[encoding][1]:
                return None  # tiktoken would delete and re-download it
        import tiktoken

        return _TiktokenCounter(encoding, tiktoken.get_encoding(encoding))
    except Exception:  # a broken install must not break estimation
        return None


_counters: dict[str, TokenCounter] = {}
_lock = threading.Lock()


def counter_for(model: str | None) -> TokenCounter:
    """The best offline counter for ``model`` (decided once per encoding, then cached)."""
    name = model.lower() if model else ""
    encoding = "cl100k_base" if name.startswith(_CL100K_PREFIXES) or name == "gpt-4" else "o200k_base"
    counter = _counters.get(encoding)
    if counter is None:
        with _lock:
            counter = _counters.get(encoding)
            if counter is None:
                counter = offline_tiktoken(encoding) or HeuristicCounter()
                _counters[encoding] = counter
    return counter


def reset_counters() -> None:
    """Forget the chosen counters (tests, or after tiktoken's cache was filled)."""
    with _lock:
        _counters.clear()


def message_texts(messages: Any) -> Iterable[str]:
    """Text parts of chat messages in OpenAI/Anthropic shapes (str content or content parts)."""
    if not isinstance(messages, (list, tuple)):
        return
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else getattr(message, "content", None)
        if isinstance(content, str):
            yield content
        elif isinstance(content, (list, tuple)):
            for part in content:
                text = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
                if isinstance(text, str):
                    yield text


def estimate_prompt_tokens(messages: Any = None, prompt: str | None = None, model: str | None = None) -> int:
    """Estimated input tokens of a chat ``messages`` list and/or a plain ``prompt``."""
    counter = counter_for(model)
    total = 0
    if isinstance(messages, (list, tuple)) and messages:
        total += sum(counter.count(text) for text in message_texts(messages))
        total += TOKENS_PER_MESSAGE * len(messages) + REPLY_PRIMING_TOKENS
    if prompt:
        total += counter.count(prompt)
    return total


def estimate_usage(*, input_tokens: int, output_text: str | None = None, output_ascii_chars: int = 0,
                   output_non_ascii_chars: int = 0, model: str | None = None) -> Usage:
    """An estimated Usage from an input estimate and the output text (or its character counts)."""
    if output_text is not None:
        output = counter_for(model).count(output_text)
    else:
        output = tokens_from_chars(output_ascii_chars, output_non_ascii_chars)
    return Usage.build(input_tokens=input_tokens, output_tokens=output, estimated=True)
