"""Usage log record attributes -> one ledger row (pure functions)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from llmtally import semconv as sc

PICO = Decimal(10) ** 12
_OURS = ("llmtally.cost", "llmtally.usage", "llmtally.price", "llmtally.record", "llmtally.duration",
         "llmtally.error", "llmtally.trace_id", "llmtally.span_id", "llmtally.source", "llmtally.run")


def to_pico(amount: str | None) -> int | None:
    """Exact decimal USD string -> integer pico-USD (banker's rounding below 1e-12 USD)."""
    if amount is None:
        return None
    try:
        return int((Decimal(amount) * PICO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    except (InvalidOperation, ValueError):
        return None


def from_pico(pico: int | None) -> Decimal:
    return Decimal(0) if pico is None else Decimal(int(pico)) / PICO


_NS_PER_DAY = 86_400 * 10**9
_ATTRIBUTION = frozenset({sc.LLMTALLY_TENANT_ID, sc.LLMTALLY_FEATURE})


@functools.lru_cache(maxsize=64)
def _calendar(epoch_day: int) -> tuple[str, str, str]:
    """(YYYY-MM-DD, ISO YYYY-Www, YYYY-MM) of a UTC day, computed once per day."""
    moment = datetime.fromtimestamp(epoch_day * 86_400, tz=timezone.utc)
    iso = moment.isocalendar()
    return moment.strftime("%Y-%m-%d"), f"{iso[0]:04d}-W{iso[1]:02d}", moment.strftime("%Y-%m")


def row_from_attributes(attrs: Mapping[str, Any], *, timestamp_ns: int | None,
                        service: str | None = None) -> dict[str, Any] | None:
    """A ledger row from a usage record's attributes, or None when it is not a usage record."""
    record_id = attrs.get(sc.LLMTALLY_RECORD_ID)
    if not isinstance(record_id, str) or not record_id:
        return None
    ts_ns = timestamp_ns or time.time_ns()
    day, week, month = _calendar(ts_ns // _NS_PER_DAY)

    get = attrs.get

    def text(key: str, limit: int = 255) -> str | None:
        value = get(key)
        if value is None:
            return None
        if type(value) is not str:
            value = str(value)
        if "\x00" in value:  # PostgreSQL text cannot hold NUL
            value = value.replace("\x00", "")
        return value if len(value) <= limit else value[:limit]

    def count(key: str) -> int:
        value = get(key)
        if type(value) is int:
            return value
        return int(value) if isinstance(value, float) else 0

    cost_decimal = text(sc.LLMTALLY_COST_DECIMAL)
    extra = {k: v for k, v in attrs.items()
             if k[:9] == "llmtally." and not k.startswith(_OURS) and k not in _ATTRIBUTION}
    breakdown = {leaf: attrs[sc.LLMTALLY_COST_PREFIX + leaf] for leaf in sc.TOKEN_LEAVES
                 if sc.LLMTALLY_COST_PREFIX + leaf in attrs}
    request_model = text(sc.GEN_AI_REQUEST_MODEL)
    response_model = text(sc.GEN_AI_RESPONSE_MODEL)
    return {
        "id": record_id,
        "ts_ms": ts_ns // 1_000_000,
        "day": day,
        "week": week,
        "month": month,
        "service": service[:200] if service else None,
        "provider": text(sc.GEN_AI_PROVIDER_NAME) or "unknown",
        "operation": text(sc.GEN_AI_OPERATION_NAME) or "unknown",
        "request_model": request_model[:200] if request_model else None,
        "response_model": response_model[:200] if response_model else None,
        "model": (response_model or request_model or "unknown")[:200],
        "server_address": text(sc.SERVER_ADDRESS),
        "user_id": text(sc.USER_ID),
        "tenant_id": text(sc.LLMTALLY_TENANT_ID),
        "session_id": text(sc.SESSION_ID),
        "conversation_id": text(sc.GEN_AI_CONVERSATION_ID),
        "feature": text(sc.LLMTALLY_FEATURE),
        "extra": json.dumps(extra, sort_keys=True, default=str) if extra else None,
        "input_tokens": count(sc.GEN_AI_USAGE_INPUT_TOKENS),
        "output_tokens": count(sc.GEN_AI_USAGE_OUTPUT_TOKENS),
        "cache_read_tokens": count(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS),
        "cache_write_tokens": count(sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS),
        "cache_write_1h_tokens": count(sc.LLMTALLY_CACHE_WRITE_1H_TOKENS),
        "reasoning_tokens": count(sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS),
        "estimated": bool(attrs.get(sc.LLMTALLY_USAGE_ESTIMATED, False)),
        "cost_status": text(sc.LLMTALLY_COST_STATUS) or sc.CostStatus.UNPRICED,
        "cost_source": text(sc.GEN_AI_USAGE_COST_SOURCE),
        "cost_currency": text(sc.GEN_AI_USAGE_COST_CURRENCY),
        "cost_decimal": cost_decimal,
        "cost_pico_usd": to_pico(cost_decimal),
        "cache_savings_pico_usd": to_pico(text(sc.LLMTALLY_COST_CACHE_SAVINGS)),
        "cost_breakdown": json.dumps(breakdown, sort_keys=True) if breakdown else None,
        "price_catalog": text(sc.LLMTALLY_PRICE_CATALOG),
        "priced_as": text(sc.LLMTALLY_PRICE_MODEL),
        "duration_s": attrs.get(sc.LLMTALLY_DURATION),
        "ttfc_s": attrs.get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK),
        "streaming": bool(attrs.get(sc.GEN_AI_REQUEST_STREAM, False)),
        "error_type": text(sc.ERROR_TYPE),
        "error_message": text(sc.LLMTALLY_ERROR_MESSAGE, 4000),
        "trace_id": text(sc.LLMTALLY_TRACE_ID),
        "span_id": text(sc.LLMTALLY_SPAN_ID),
    }
