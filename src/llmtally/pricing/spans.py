"""Pricing a span made by another instrumentation from its gen_ai attributes alone.

The one reading of those attributes (token counts with their older spellings, provider with the
``gen_ai.system`` fallback, models, service tier) shared by the processor (peer spans in this process)
and the collector plugin (any app's spans), so both price the same span the same way. The generated
OTTL statements (:mod:`llmtally.collector.ottl`) reproduce it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from llmtally import semconv as sc
from llmtally.pricing.engine import STANDARD_SERVICE_TIERS, PriceBook
from llmtally.pricing.model import Cost
from llmtally.usage import Usage

_MAX_NS: Final = 253_402_300_800 * 10**9  # year 10000: no datetime past it, so priced as of now instead
_TIER_KEYS: Final = (sc.OPENAI_RESPONSE_SERVICE_TIER, sc.OPENAI_REQUEST_SERVICE_TIER)


@dataclass(frozen=True, slots=True)
class SpanPrice:
    """What :func:`price_span_attributes` read from a span, and its cost."""

    usage: Usage
    cost: Cost
    provider: str | None
    """``gen_ai.provider.name``, else ``gen_ai.system``, lower-cased; None when neither is text."""
    request_model: str | None
    response_model: str | None
    service_tier: str | None


def nonempty_text(value: object) -> str | None:
    """An attribute value that is a non-empty str, else None (the processor and the collector read the same)."""
    return value if isinstance(value, str) and value else None


def usage_from_span_attributes(attrs: Mapping[str, Any]) -> Usage:
    """Usage from GenAI semconv span attributes, with the older/peer spellings as fallbacks."""
    counts: dict[str, Any] = {field: next((attrs[k] for k in keys if attrs.get(k) is not None), None)
                              for field, keys in sc.SPAN_USAGE_SOURCES}
    return Usage.build(**counts)


def span_service_tier(attrs: Mapping[str, Any]) -> str | None:
    """The service tier that prices a span: the one the response says served it (a downgraded priority
    request says ``default``: standard), else the requested one; None for a standard tier. The OpenAI
    instrumentor and the OTTL follow the same rule."""
    for key in _TIER_KEYS:
        tier = nonempty_text(attrs.get(key))
        if tier:
            return None if tier in STANDARD_SERVICE_TIERS else tier
    return None


def price_span_attributes(attrs: Mapping[str, Any], start_ns: object, book: PriceBook, *,
                          at: datetime | None = None) -> SpanPrice:
    """Price a span from its attributes at its start, ``start_ns`` (epoch nanoseconds; ``at`` wins when
    given; neither, or a value that is no time: now). Never raises for any attribute values."""
    provider = nonempty_text(attrs.get(sc.GEN_AI_PROVIDER_NAME)) or nonempty_text(attrs.get(sc.GEN_AI_SYSTEM))
    provider = provider.lower() if provider else None
    request_model = nonempty_text(attrs.get(sc.GEN_AI_REQUEST_MODEL))
    response_model = nonempty_text(attrs.get(sc.GEN_AI_RESPONSE_MODEL))
    tier = span_service_tier(attrs)
    usage = usage_from_span_attributes(attrs)
    at_ns = start_ns if type(start_ns) is int and 0 < start_ns < _MAX_NS else None
    cost = book.cost(usage, provider=provider, request_model=request_model, response_model=response_model,
                     at=at, at_ns=at_ns, service_tier=tier)
    return SpanPrice(usage, cost, provider, request_model, response_model, tier)
