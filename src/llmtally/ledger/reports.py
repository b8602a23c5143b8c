"""Spend and token reports over the ledger: grouped by any dimensions, over a time range, filtered,
top-N, daily series, a month with its days; with estimated/unpriced shares and cache savings.

Sums are exact: cost is summed as integer pico-USD in SQL and turned into Decimal here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from llmtally.ledger.rows import from_pico
from llmtally.ledger.schema import usage
from llmtally.ledger.store import Ledger, LedgerError, redact

DIMENSIONS: dict[str, Any] = {
    "day": usage.c.day, "week": usage.c.week, "month": usage.c.month, "provider": usage.c.provider,
    "model": usage.c.model, "user": usage.c.user_id, "tenant": usage.c.tenant_id, "feature": usage.c.feature,
    "session": usage.c.session_id, "conversation": usage.c.conversation_id, "operation": usage.c.operation,
    "service": usage.c.service,
}
ORDERS = ("cost", "calls", "tokens", "key")


@dataclass
class ReportRow:
    key: dict[str, str | None]
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    cache_savings: Decimal = Decimal(0)
    estimated_calls: int = 0
    unpriced_calls: int = 0
    errors: int = 0
    free_calls: int = 0

    @property
    def estimated_share(self) -> float:
        return self.estimated_calls / self.calls if self.calls else 0.0

    @property
    def unpriced_share(self) -> float:
        return self.unpriced_calls / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.key, "calls": self.calls, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens, "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens, "reasoning_tokens": self.reasoning_tokens,
                "cost_usd": str(self.cost), "cache_savings_usd": str(self.cache_savings),
                "estimated_calls": self.estimated_calls, "unpriced_calls": self.unpriced_calls,
                "free_calls": self.free_calls, "errors": self.errors}


@dataclass
class Report:
    by: list[str]
    rows: list[ReportRow]
    total: ReportRow
    since: datetime | None = None
    until: datetime | None = None
    filters: dict[str, str] = field(default_factory=dict)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``24h``, ``90m``, ``2w``, ``today``, ``month`` (this month), or an ISO date/time (UTC)."""
    now = now or datetime.now(timezone.utc)
    value = text.strip().lower()
    match = re.fullmatch(r"(\d+)\s*([smhdw])", value)
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match.group(2)]
        return now - timedelta(**{unit: int(match.group(1))})
    if value == "today":
        return datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
    if value == "month":
        return datetime(now.year, now.month, 1, tzinfo=timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use e.g. 7d, 24h, today, month, 2025-09-01)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _aggregates() -> list[Any]:
    c = usage.c
    return [
        func.count().label("calls"),
        func.coalesce(func.sum(c.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(c.output_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(c.cache_read_tokens), 0).label("cache_read_tokens"),
        func.coalesce(func.sum(c.cache_write_tokens), 0).label("cache_write_tokens"),
        func.coalesce(func.sum(c.reasoning_tokens), 0).label("reasoning_tokens"),
        func.coalesce(func.sum(c.cost_pico_usd), 0).label("cost_pico"),
        func.coalesce(func.sum(c.cache_savings_pico_usd), 0).label("savings_pico"),
        func.coalesce(func.sum(case((c.estimated.is_(True), 1), else_=0)), 0).label("estimated_calls"),
        func.coalesce(func.sum(case((c.cost_status == "unpriced", 1), else_=0)), 0).label("unpriced_calls"),
        func.coalesce(func.sum(case((c.error_type.is_not(None), 1), else_=0)), 0).label("errors"),
        func.coalesce(func.sum(case((c.cost_status == "free", 1), else_=0)), 0).label("free_calls"),
    ]


def _row(key: dict[str, str | None], r: Any) -> ReportRow:
    return ReportRow(key=key, calls=int(r.calls), input_tokens=int(r.input_tokens),
                     output_tokens=int(r.output_tokens), cache_read_tokens=int(r.cache_read_tokens),
                     cache_write_tokens=int(r.cache_write_tokens), reasoning_tokens=int(r.reasoning_tokens),
                     cost=from_pico(int(r.cost_pico)), cache_savings=from_pico(int(r.savings_pico)),
                     estimated_calls=int(r.estimated_calls), unpriced_calls=int(r.unpriced_calls), errors=int(r.errors),
                     free_calls=int(r.free_calls))


def report(ledger: Ledger, by: Sequence[str] = ("model",), *, since: datetime | None = None,
           until: datetime | None = None, filters: Mapping[str, str] | None = None, top: int | None = None,
           order: str = "cost") -> Report:
    """Spend and tokens grouped by ``by`` (any of :data:`DIMENSIONS`), newest data included."""
    unknown = [d for d in (*by, *(filters or {})) if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension(s) {', '.join(unknown)}; use {', '.join(DIMENSIONS)}")
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; use {', '.join(ORDERS)}")
    conditions = []
    if since is not None:
        conditions.append(usage.c.ts_ms >= int(since.timestamp() * 1000))
    if until is not None:
        conditions.append(usage.c.ts_ms < int(until.timestamp() * 1000))
    for name, value in (filters or {}).items():
        conditions.append(DIMENSIONS[name] == value)
    where = and_(*conditions) if conditions else None
    columns = [DIMENSIONS[d].label(f"k_{d}") for d in by]
    grouped: Select[Any] = select(*columns, *_aggregates())
    total_q: Select[Any] = select(*_aggregates())
    if where is not None:
        grouped = grouped.where(where)
        total_q = total_q.where(where)
    if by:
        grouped = grouped.group_by(*[DIMENSIONS[d] for d in by])
        order_by = {"cost": func.coalesce(func.sum(usage.c.cost_pico_usd), 0).desc(),
                    "calls": func.count().desc(),
                    "tokens": func.sum(usage.c.input_tokens + usage.c.output_tokens).desc(),
                    "key": None}[order]
        keys = [DIMENSIONS[d].asc().nulls_last() for d in by]  # the same order on every database
        grouped = grouped.order_by(*([order_by] if order_by is not None else []), *keys)
        if top is not None:
            grouped = grouped.limit(top)
    ledger.ensure_schema()
    try:
        with ledger.engine.connect() as conn:
            rows = [_row({d: getattr(r, f"k_{d}") for d in by}, r) for r in conn.execute(grouped)] if by else []
            total = _row({}, conn.execute(total_q).one())
    except (DBAPIError, SQLAlchemyError) as exc:
        raise LedgerError(f"cannot read the ledger database {redact(ledger.url)}: {exc}") from None
    return Report(by=list(by), rows=rows, total=total, since=since, until=until, filters=dict(filters or {}))


def daily(ledger: Ledger, *, since: datetime | None = None, until: datetime | None = None,
          filters: Mapping[str, str] | None = None) -> Report:
    """One row per UTC day, oldest first."""
    return report(ledger, ("day",), since=since, until=until, filters=filters, order="key")


def month(ledger: Ledger, year_month: str, *, filters: Mapping[str, str] | None = None) -> Report:
    """A month (``YYYY-MM``) with its daily breakdown; ``total`` is the month."""
    try:
        first = date.fromisoformat(year_month + "-01")
    except ValueError:
        raise ValueError(f"not a month: {year_month!r} (use YYYY-MM)") from None
    nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    since = datetime(first.year, first.month, 1, tzinfo=timezone.utc)
    until = datetime(nxt.year, nxt.month, 1, tzinfo=timezone.utc)
    return daily(ledger, since=since, until=until, filters=filters)
