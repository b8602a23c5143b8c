"""Token estimation: the documented heuristic, tiktoken only when cached offline, never a download."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmtally import estimate


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any connection attempt fails the test: estimation must work offline."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("estimate.py tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    estimate.reset_counters()
    yield
    estimate.reset_counters()


def test_heuristic_counts() -> None:
    assert estimate.heuristic_tokens("") == 0
    assert estimate.heuristic_tokens("abcd") == 1
    assert estimate.heuristic_tokens("abcde") == 2  # ceil(5 / 4)
    assert estimate.heuristic_tokens("hello world, this is a test") == 7  # 27 chars -> ceil(27/4)
    assert estimate.heuristic_tokens("日本語") == 3  # one token per non-ASCII character
    assert estimate.heuristic_tokens("ab日本") == 3  # ceil(2/4) + 2
    assert estimate.tokens_from_chars(9, 2) == 3 + 2


def test_empty_tiktoken_cache_uses_heuristic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    counter = estimate.counter_for("gpt-4o-mini")
    assert counter.name == "heuristic"
    assert counter.count("abcdefgh") == 2


def test_disabled_tiktoken_cache_uses_heuristic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken would download on every use
    assert estimate.tiktoken_cache_path("o200k_base") is None
    assert estimate.counter_for("gpt-4o").name == "heuristic"


def test_corrupt_cached_encoding_is_not_used_nor_deleted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("tiktoken")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    path = estimate.tiktoken_cache_path("o200k_base")
    assert path is not None and Path(path).parent == tmp_path
    Path(path).write_bytes(b"not an encoding")
    # tiktoken itself would delete the file and re-download it; we must do neither.
    assert estimate.counter_for("gpt-4o").name == "heuristic"
    assert Path(path).read_bytes() == b"not an encoding"


def test_encoding_choice_by_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    o200k = estimate.tiktoken_cache_path("o200k_base")
    cl100k = estimate.tiktoken_cache_path("cl100k_base")
    assert o200k != cl100k
    estimate.counter_for("gpt-4-0613")
    estimate.counter_for("gpt-4o")
    assert set(estimate._counters) == {"cl100k_base", "o200k_base"}


def test_prompt_estimate_adds_message_framing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    messages = [
        {"role": "system", "content": "abcd" * 3},  # 3 tokens
        {"role": "user", "content": [{"type": "text", "text": "abcd"}, {"type": "image_url"}]},  # 1 token
    ]
    # 4 content tokens + 3 per message * 2 + 3 reply priming
    assert estimate.estimate_prompt_tokens(messages, model="gpt-4o") == 4 + 6 + 3
    assert estimate.estimate_prompt_tokens(prompt="abcdefgh") == 2
    assert estimate.estimate_prompt_tokens("not a list") == 0


def test_estimate_usage_is_flagged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    usage = estimate.estimate_usage(input_tokens=13, output_text="abcdefgh")
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (13, 2, True)
    from_chars = estimate.estimate_usage(input_tokens=0, output_ascii_chars=10, output_non_ascii_chars=1)
    assert (from_chars.output_tokens, from_chars.estimated) == (3 + 1, True)
