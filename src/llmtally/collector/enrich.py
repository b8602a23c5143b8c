"""Cost enrichment for gen_ai spans made by apps that do not use llmtally, in any language.

A collector plugin (``rotel_processor.py``) hands each span's attributes to :func:`enrich_attributes`,
which decides whether the span is an inference span that still lacks a cost and, if so, prices it with
llmtally's own engine (exact Decimal, the bundled catalog plus ``LLMTALLY_PRICE_FILES``). The result is
the attributes to add, the same ones llmtally's instrumentors set on their own spans.

Rules:

* only inference operations (``chat``, ``text_completion``, ``generate_content``, ``embeddings``) with a
  model and at least one token count: agent and tool spans often carry their children's totals, and
  pricing those would count a call twice;
* never a span that already has a cost or a cost status (llmtally's own spans, including the unpriced
  ones, and spans priced by the provider or another tool), nor, in the plugin, a span nested under an
  llmtally span of the same batch (an SDK's own span for the call llmtally already priced);
* token attributes are semconv-inclusive (input includes cache reads and writes, output includes
  reasoning); older spellings (``gen_ai.usage.prompt_tokens``, ``gen_ai.system``) are read as fallbacks;
* an unknown model is ``unpriced`` with no amount, never $0;
* fail open: any failure leaves the span as it was, counted per outcome and reported once through
  :func:`llmtally.instrumentation._guard.report_internal_error`.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Final

from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation.call import cost_attributes, default_price_book
from llmtally.pricing import PriceBook
from llmtally.pricing.spans import nonempty_text, price_span_attributes

INFERENCE_OPERATIONS: Final = frozenset({
    sc.Operation.CHAT, sc.Operation.TEXT_COMPLETION, sc.Operation.GENERATE_CONTENT, sc.Operation.EMBEDDINGS,
})
# Present on a span that is already priced (or deliberately left unpriced) by whoever made it.
COSTED_KEYS: Final = (sc.GEN_AI_USAGE_COST_AMOUNT, sc.LLMTALLY_COST_STATUS)
# Attribute keys the enrichment reads. A plugin copies only these out of a span: message content
# (gen_ai.input.messages, ...) can be large and is never needed to price a call.
_READ_PREFIXES: Final = ("gen_ai.usage.", "gen_ai.request.", "gen_ai.response.", "llmtally.", "openai.",
                         "anthropic.usage.")
_READ_KEYS: Final = frozenset({sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM})


class Outcome:
    """What :func:`enrich_attributes` did with one span (keys of :func:`outcome_counts`)."""

    PRICED: Final = "priced"
    UNPRICED: Final = "unpriced"
    FREE: Final = "free"
    ALREADY_COSTED: Final = "already_costed"
    NESTED: Final = "nested"  # under an llmtally span: the same call, priced there (decided by the plugin)
    NOT_INFERENCE: Final = "not_inference"
    FAILED: Final = "failed"


_lock = threading.Lock()
_outcomes: Counter[str] = Counter()


def wanted(key: str) -> bool:
    """Whether :func:`enrich_attributes` may read attribute ``key`` (plugins copy only these)."""
    return key in _READ_KEYS or key.startswith(_READ_PREFIXES)


def enrich_attributes(attrs: Mapping[str, object], *, at: datetime | None = None,
                      book: PriceBook | None = None, at_ns: object = None) -> dict[str, AttributeValue]:
    """The cost attributes to add to a span with attributes ``attrs`` started at ``at``, or ``at_ns``
    (its ``start_time_unix_nano``; default now).

    Empty when the span is not an inference span with usage, or is already costed. Never raises: a
    failure returns an empty dict (the span stays as it was) and is counted as ``failed``.
    """
    try:
        outcome, added = _enrich(attrs, at, at_ns, book)
    except Exception as exc:
        report_internal_error("collector.enrich", exc)
        outcome, added = Outcome.FAILED, {}
    count(outcome)
    return added


def _enrich(attrs: Mapping[str, object], at: datetime | None, at_ns: object,
            book: PriceBook | None) -> tuple[str, dict[str, AttributeValue]]:
    if any(attrs.get(key) is not None for key in COSTED_KEYS):
        return Outcome.ALREADY_COSTED, {}
    request_model = nonempty_text(attrs.get(sc.GEN_AI_REQUEST_MODEL))
    response_model = nonempty_text(attrs.get(sc.GEN_AI_RESPONSE_MODEL))
    if nonempty_text(attrs.get(sc.GEN_AI_OPERATION_NAME)) not in INFERENCE_OPERATIONS \
            or not (request_model or response_model) \
            or all(attrs.get(key) is None for key in sc.SPAN_USAGE_KEYS):
        return Outcome.NOT_INFERENCE, {}
    book = book or default_price_book()
    priced = price_span_attributes(attrs, at_ns, book, at=at)  # as the processor prices a peer's span
    cost = priced.cost
    added = cost_attributes(cost)
    if sc.LLMTALLY_PRICE_CATALOG not in added:
        # Unpriced: say which catalog did not know the model, so a later catalog update explains a change.
        catalog = book.catalog
        if catalog is not None:
            added[sc.LLMTALLY_PRICE_CATALOG] = catalog.version
    if priced.usage.clamped:
        added[sc.LLMTALLY_USAGE_CLAMPED] = True
    return cost.status, added


def start_time(unix_nano: object) -> datetime | None:
    """A span's start time as the pricing date; None (price as of now) when unset or out of range."""
    if type(unix_nano) is not int or unix_nano <= 0:
        return None
    try:
        # Integer seconds, then microseconds: a float division can round the day's last instant into the next.
        return datetime.fromtimestamp(unix_nano // 10**9, tz=timezone.utc).replace(
            microsecond=unix_nano // 1000 % 10**6)
    except (OverflowError, OSError, ValueError):
        return None


def count(outcome: str) -> None:
    with _lock:
        _outcomes[outcome] += 1


def outcome_counts() -> dict[str, int]:
    """Spans seen per :class:`Outcome` since start (or :func:`reset_counts`)."""
    with _lock:
        return dict(_outcomes)


def reset_counts() -> None:
    """For tests."""
    with _lock:
        _outcomes.clear()
