"""What the fake provider should do for one request, from its headers or its model name.

Controls (all optional, deterministic):

* ``X-Fake-Scenario: cut,slow`` or a model name suffix ``gpt-4o-mini@cut+slow``. Flags:
  ``error-400``, ``error-429``, ``error-500`` (the provider's error body), ``slow`` (first byte after
  ``X-Fake-Delay`` seconds, default 0.2), ``cut`` (the connection drops mid-stream), ``no-usage`` (never
  report usage), ``tools`` (answer with a tool call), ``cost`` (report a provider cost, OpenRouter style),
  ``malformed-usage`` (counts as strings, negatives and nulls).
* ``X-Fake-Usage: {"input": 1200, "output": 300, "cache_read": 1024, "cache_write": 0,
  "cache_write_1h": 0, "reasoning": 0, "cost": 0.0012}`` in semconv terms (input includes cache, output
  includes reasoning); each wire format renders it in that provider's own semantics.
* ``X-Fake-Text`` (the answer), ``X-Fake-Chunks`` (how many stream chunks carry it),
  ``X-Fake-Chunk-Delay`` (seconds between stream frames).

The response reports the model name without its ``@flags`` suffix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_TEXT = "This is a deterministic answer from the llmtally fake provider."
DEFAULT_CHUNKS = 8
DEFAULT_INPUT_TOKENS = 25


@dataclass(frozen=True)
class FakeUsage:
    input: int = DEFAULT_INPUT_TOKENS
    output: int = DEFAULT_CHUNKS
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    cost: float | None = None

    @property
    def uncached_input(self) -> int:
        return self.input - self.cache_read - self.cache_write


@dataclass(frozen=True)
class Scenario:
    model: str = ""
    flags: frozenset[str] = frozenset()
    usage: FakeUsage = field(default_factory=FakeUsage)
    text: str = DEFAULT_TEXT
    chunks: int = DEFAULT_CHUNKS
    delay: float = 0.0
    chunk_delay: float = 0.0

    def has(self, flag: str) -> bool:
        return flag in self.flags

    @property
    def error_status(self) -> int | None:
        for status in (400, 429, 500):
            if f"error-{status}" in self.flags:
                return status
        return None

    def text_chunks(self) -> list[str]:
        """The answer split into ``chunks`` pieces whose concatenation is exactly ``text``."""
        n = max(1, min(self.chunks, len(self.text) or 1))
        size, extra = divmod(len(self.text), n)
        pieces, start = [], 0
        for i in range(n):
            end = start + size + (1 if i < extra else 0)
            pieces.append(self.text[start:end])
            start = end
        return pieces


def parse_scenario(headers: Mapping[str, str], model: str | None) -> Scenario:
    """Build a Scenario; unknown or malformed controls raise ValueError (answered with a 400)."""
    lower = {k.lower(): v for k, v in headers.items()}
    flags: set[str] = set()
    base_model = model or ""
    if "@" in base_model:
        base_model, _, suffix = base_model.partition("@")
        flags.update(f for f in suffix.split("+") if f)
    flags.update(f.strip() for f in lower.get("x-fake-scenario", "").split(",") if f.strip())
    unknown = flags - KNOWN_FLAGS
    if unknown:
        raise ValueError(f"unknown fake scenario flags: {sorted(unknown)}")
    chunks = int(lower.get("x-fake-chunks", DEFAULT_CHUNKS))
    text = lower.get("x-fake-text", DEFAULT_TEXT)
    usage_json = lower.get("x-fake-usage")
    if usage_json:
        raw = json.loads(usage_json)
        if not isinstance(raw, dict) or set(raw) - set(FakeUsage.__dataclass_fields__):
            raise ValueError(f"X-Fake-Usage keys must be among {sorted(FakeUsage.__dataclass_fields__)}")
        usage = FakeUsage(**{"output": chunks, **raw})
    else:
        usage = FakeUsage(output=chunks)
    delay = float(lower.get("x-fake-delay", 0.2 if "slow" in flags else 0.0))
    return Scenario(model=base_model, flags=frozenset(flags), usage=usage, text=text, chunks=chunks,
                    delay=delay, chunk_delay=float(lower.get("x-fake-chunk-delay", 0.0)))


KNOWN_FLAGS = frozenset({"error-400", "error-429", "error-500", "slow", "cut", "no-usage", "tools", "cost",
                         "malformed-usage"})
