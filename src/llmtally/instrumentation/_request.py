"""Request parameters as span attributes, shared by the instrumentors (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc

# Semconv types the request numbers: these are integers (a float is no token count or seed: skipped); every
# other one is a double (an int 0 becomes 0.0), so one attribute keeps one type across calls and SDKs.
_INTEGERS = frozenset({sc.GEN_AI_REQUEST_MAX_TOKENS, sc.GEN_AI_REQUEST_SEED, sc.GEN_AI_REQUEST_CHOICE_COUNT})


def request_number(attr: str, value: Any) -> int | float | None:
    """``value`` as the semconv type of request attribute ``attr``, or None when it is no such number (a
    bool, None, an SDK's "unset" sentinel)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if attr in _INTEGERS:
        return int(value) if isinstance(value, int) else None
    return float(value)


def request_numbers(get: Callable[[str], Any], keys: Iterable[tuple[str, str]],
                    into: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
    """Add to ``into`` each ``(key, attribute)`` of ``keys`` whose ``get(key)`` is a number of the
    attribute's semconv type; returns ``into``."""
    for key, attr in keys:
        number = request_number(attr, get(key))
        if number is not None:
            into[attr] = number
    return into


def jsonable(value: Any) -> Any:
    """``json.dumps`` ``default=`` for captured prompts: SDK models as their dicts, anything else as text."""
    dump = getattr(value, "model_dump", None) or getattr(value, "dict", None)  # pydantic v2, v1
    if callable(dump):
        try:
            return dump()
        except Exception:
            pass
    return str(value)
