"""The embedded usage ledger on SQLite and on a real PostgreSQL: schema and migrations, idempotent writes,
the spool-backed exporter (crash replay, a database that goes down and comes back), and reports.

Usage records are built the way production builds them: a ``CallRecord`` priced by the real ``PriceBook``,
turned into log record attributes by ``usage_record_attributes``, then written either directly
(``row_from_attributes`` + ``Ledger.insert``) or end to end through an SDK ``LoggerProvider`` +
``BatchLogRecordProcessor(LedgerExporter(url))``. Every expected sum is derived by hand in this file from
the providers' published prices per 1M tokens (quoted beside them), never read back from the code.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select

from llmtally import semconv as sc
from llmtally.instrumentation.call import CallRecord
from llmtally.ledger import (
    Ledger,
    LedgerError,
    LedgerExporter,
    Report,
    ReportRow,
    Spool,
    daily,
    month,
    parse_since,
    replay,
)
from llmtally.ledger import report as ledger_report
from llmtally.ledger.rows import row_from_attributes
from llmtally.ledger.schema import CURRENT_VERSION, migrate, schema_version, usage
from llmtally.pricing import PriceBook
from llmtally.processor import usage_record_attributes
from llmtally.usage import Usage
from tests.pg import PostgresServer, free_port
from tests.prom import wait_until

D = Decimal
M = D(1_000_000)
UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SERVICE = "checkout"

# Published prices, USD per 1M tokens (the 5-minute cache write where a provider has one).
PRICES: dict[str, dict[str, Decimal]] = {
    # OpenAI gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output.
    "gpt-4o-mini": {"input": D("0.15"), "cache_read": D("0.075"), "output": D("0.60")},
    # OpenAI o3 (since 2025-06-10): $2 input, $0.50 cached input, $8 output; reasoning tokens bill as output.
    "o3": {"input": D("2"), "cache_read": D("0.50"), "output": D("8")},
    # Anthropic Claude Sonnet 4.5 (<= 200k input): $3 input, $0.30 cache read, $3.75 cache write (5 min), $15 output.
    "claude-sonnet-4-5": {"input": D("3"), "cache_read": D("0.30"), "cache_write": D("3.75"), "output": D("15")},
}
HOSTS = {"openai": "api.openai.com", "anthropic": "api.anthropic.com", "vllm": "vllm.internal"}


def at(*args: int, millis: int = 0) -> datetime:
    return datetime(*args, tzinfo=UTC) + timedelta(milliseconds=millis)


def ns(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000


def ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def U(input_tokens: int, *, out: int = 0, cr: int = 0, cw: int = 0, reasoning: int = 0,
      estimated: bool = False) -> Usage:
    return Usage.build(input_tokens=input_tokens, output_tokens=out, cache_read_tokens=cr, cache_write_tokens=cw,
                       reasoning_tokens=reasoning, estimated=estimated)


@dataclass(frozen=True)
class Spec:
    """One LLM call of the test data set, with its hand-computed cost."""

    n: int
    when: datetime  # the end of the call: the usage record's timestamp
    provider: str
    model: str  # requested
    response_model: str | None
    tenant: str | None
    user: str | None
    feature: str | None
    usage: Usage
    error: str | None = None
    priced_as: str | None = None  # key into PRICES; None = no published price (unpriced)

    @property
    def ledger_model(self) -> str:
        return self.response_model or self.model  # the contract: response model, else request model

    @property
    def session(self) -> str | None:
        return f"sess-{self.user}-{self.when:%m%d}" if self.user else None

    @property
    def trace_id(self) -> int:
        return 0x4BF92F3577B34DA6A3CE929D0E0E0000 + self.n

    @property
    def span_id(self) -> int:
        return 0x00F067AA0BA90000 + self.n

    @property
    def record_id(self) -> str:
        return f"{self.trace_id:032x}-{self.span_id:016x}"

    @property
    def cost(self) -> Decimal | None:
        if self.priced_as is None:
            return None
        p = PRICES[self.priced_as]
        u = self.usage
        uncached = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens
        return (uncached * p["input"] + u.cache_read_tokens * p["cache_read"]
                + u.cache_write_tokens * p.get("cache_write", p["input"]) + u.output_tokens * p["output"]) / M

    @property
    def savings(self) -> Decimal:
        if self.priced_as is None:
            return D(0)
        p = PRICES[self.priced_as]
        return self.usage.cache_read_tokens * (p["input"] - p["cache_read"]) / M


def _spec(n: int, when: datetime, provider: str, model: str, response_model: str | None, tenant: str | None,
          user: str | None, feature: str | None, usage: Usage, error: str | None = None) -> Spec:
    priced_as = model if model in PRICES else None  # the requested name is the catalog entry here
    return Spec(n, when, provider, model, response_model, tenant, user, feature, usage, error, priced_as)


MINI, MINI_R = "gpt-4o-mini", "gpt-4o-mini-2024-07-18"
SONNET, SONNET_R = "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"
O3, O3_R = "o3", "o3-2025-04-16"
LLAMA = "llama3.1:8b"

SPECS: list[Spec] = [
    # 0.00153 = 2,000 x 0.15 + 10,000 x 0.075 + 800 x 0.60 (per 1M); saves 10,000 x 0.075
    _spec(1, at(2025, 8, 31, 23, 59, 59, millis=999), "openai", MINI, MINI_R, "acme", "u-1", "chat",
          U(12_000, cr=10_000, out=800)),
    _spec(2, at(2025, 9, 1), "openai", MINI, MINI_R, "globex", "u-7", "search", U(1_000, out=200)),  # 0.00027
    # 0.156 = 2,000 x 3 + 50,000 x 0.30 + 30,000 x 3.75 + 1,500 x 15; saves 50,000 x 2.70 = 0.135
    _spec(3, at(2025, 9, 1, 8, 30), "anthropic", SONNET, SONNET_R, "acme", "u-2", "summarise",
          U(82_000, cr=50_000, cw=30_000, out=1_500)),
    _spec(4, at(2025, 9, 1, 12), "openai", O3, O3_R, "acme", "u-1", "agent",
          U(1_000, out=5_000, reasoning=4_200)),  # 0.042 = 1,000 x 2 + 5,000 x 8
    # a self-hosted model behind a provider llmtally has no prices for: unpriced (Ollama would be "free")
    _spec(5, at(2025, 9, 1, 13), "vllm", LLAMA, LLAMA, "initech", "u-9", "chat", U(500, out=100)),  # unpriced
    _spec(6, at(2025, 9, 2, 9, 15), "openai", MINI, MINI_R, "globex", "u-7", "chat",
          U(2_000, out=1_000, estimated=True)),  # 0.0009, estimated (a stream without usage)
    _spec(7, at(2025, 9, 2, 10), "openai", MINI, None, "acme", "u-1", "chat", Usage(),
          error="RateLimitError"),  # rejected: $0, no response model
    _spec(8, at(2025, 9, 15, 17, 45), "anthropic", SONNET, SONNET_R, "globex", "u-8", "summarise",
          U(10_000, out=2_000)),  # 0.06
    # 0.0006264 = 1,952 x 0.15 + 2,048 x 0.075 + 300 x 0.60; saves 2,048 x 0.075 = 0.0001536
    _spec(9, at(2025, 9, 30, 23, 59, 59, millis=999), "openai", MINI, MINI_R, "acme", "u-2", "search",
          U(4_000, cr=2_048, out=300)),
    # 0.0101 = 2,000 x 2 + 1,000 x 0.50 + 700 x 8; saves 1,000 x 1.50 = 0.0015
    _spec(10, at(2025, 10, 1), "openai", O3, O3_R, "initech", "u-9", "agent",
          U(3_000, cr=1_000, out=700, reasoning=300)),
    _spec(11, at(2025, 10, 1, 6), "openai", MINI, MINI_R, None, None, None, U(100, out=50)),  # 0.000045, unattributed
    _spec(12, at(2025, 10, 2, 14, 5), "anthropic", SONNET, SONNET_R, "acme", "u-1", "chat",
          U(3_000, out=400, estimated=True)),  # 0.015
    _spec(13, at(2025, 10, 2, 15), "vllm", LLAMA, LLAMA, "initech", "u-9", "chat",
          U(800, out=300, estimated=True)),  # unpriced and estimated
]
BY_N = {s.n: s for s in SPECS}


def test_hand_costs_of_the_data_set() -> None:
    """The hand formula above against hand-written totals (the comments of SPECS)."""
    assert [s.cost for s in SPECS] == [D("0.00153"), D("0.00027"), D("0.156"), D("0.042"), None, D("0.0009"), D(0),
                                       D("0.06"), D("0.0006264"), D("0.0101"), D("0.000045"), D("0.015"), None]
    assert sum(s.savings for s in SPECS) == D("0.00075") + D("0.135") + D("0.0001536") + D("0.0015")


# --- building records the way production does ---------------------------------------------------------------

_book: PriceBook | None = None


def book() -> PriceBook:
    global _book
    if _book is None:
        _book = PriceBook()
    return _book


def call_record(spec: Spec) -> CallRecord:
    start = spec.when - timedelta(seconds=1.5)
    cost = book().cost(spec.usage, provider=spec.provider, request_model=spec.model,
                       response_model=spec.response_model, at=start)
    attributes: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: spec.provider,
                                  sc.GEN_AI_REQUEST_MODEL: spec.model}
    for key, value in ((sc.USER_ID, spec.user), (sc.LLMTALLY_TENANT_ID, spec.tenant),
                       (sc.LLMTALLY_FEATURE, spec.feature), (sc.SESSION_ID, spec.session)):
        if value is not None:
            attributes[key] = value
    streaming = spec.usage.estimated
    return CallRecord(
        provider=spec.provider, operation="chat", request_model=spec.model, response_model=spec.response_model,
        response_id=None if spec.error else f"resp-{spec.n}", server_address=HOSTS[spec.provider], server_port=443,
        usage=spec.usage, cost=cost, streaming=streaming, start_time_ns=ns(start), end_time_ns=ns(spec.when),
        duration_s=1.5, time_to_first_chunk_s=0.25 if streaming else None, error_type=spec.error,
        error_message="Rate limit reached for gpt-4o-mini" if spec.error else None, trace_id=spec.trace_id,
        span_id=spec.span_id, sampled=True, attributes=attributes)


def rows_of(specs: Iterable[Spec]) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        record = call_record(spec)
        row = row_from_attributes(usage_record_attributes(record), timestamp_ns=record.end_time_ns)
        assert row is not None
        rows.append(row)
    return rows


def insert_direct(ledger: Ledger, specs: Iterable[Spec]) -> None:
    ledger.insert(rows_of(specs))


def export_through_sdk(url: str, specs: Iterable[Spec]) -> None:
    """The production pipeline: SDK LoggerProvider -> BatchLogRecordProcessor -> LedgerExporter."""
    exporter = LedgerExporter(url)
    provider = LoggerProvider(resource=Resource.create({"service.name": SERVICE}), shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logger = provider.get_logger("llmtally")
    try:
        logger.emit(body="an ordinary application log line", attributes={"http.route": "/checkout"})
        for spec in specs:
            record = call_record(spec)
            logger.emit(event_name=sc.USAGE_EVENT_NAME, attributes=usage_record_attributes(record),
                        timestamp=record.end_time_ns, observed_timestamp=record.end_time_ns)
        assert provider.force_flush()
        assert exporter.force_flush()
    finally:
        provider.shutdown()  # shuts the exporter down too


def captured_batch(specs: Iterable[Spec]) -> list[ReadableLogRecord]:
    """The ReadableLogRecords an SDK pipeline hands its exporter for these calls."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=Resource.create({"service.name": SERVICE}), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("llmtally")
    for spec in specs:
        record = call_record(spec)
        logger.emit(event_name=sc.USAGE_EVENT_NAME, attributes=usage_record_attributes(record),
                    timestamp=record.end_time_ns)
    batch = list(memory.get_finished_logs())
    provider.shutdown()
    return batch


# --- fixtures ------------------------------------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def ledgers() -> Iterator[Callable[[str], Ledger]]:
    made: list[Ledger] = []

    def make(url: str) -> Ledger:
        made.append(Ledger(url))
        return made[-1]

    yield make
    for ledger in made:
        ledger.dispose()


@pytest.fixture
def exporters() -> Iterator[Callable[..., LedgerExporter]]:
    made: list[LedgerExporter] = []

    def make(url: str, **kwargs: Any) -> LedgerExporter:
        made.append(LedgerExporter(url, **kwargs))
        return made[-1]

    yield make
    for exporter in made:
        exporter.shutdown()


@pytest.fixture
def populated(ledger_url: str, ledgers: Callable[[str], Ledger]) -> Ledger:
    """SPECS in the ledger: half written directly, half end to end through the SDK log pipeline."""
    ledger = ledgers(ledger_url)
    insert_direct(ledger, SPECS[0::2])
    export_through_sdk(ledger_url, SPECS[1::2])
    assert ledger.count() == len(SPECS)
    return ledger



# --- hand-computed expectations ------------------------------------------------------------------------------

@dataclass
class Agg:
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = field(default_factory=lambda: D(0))
    cache_savings: Decimal = field(default_factory=lambda: D(0))
    estimated_calls: int = 0
    unpriced_calls: int = 0
    errors: int = 0

    def add(self, s: Spec) -> None:
        u = s.usage
        self.calls += 1
        self.input_tokens += u.input_tokens
        self.output_tokens += u.output_tokens
        self.cache_read_tokens += u.cache_read_tokens
        self.cache_write_tokens += u.cache_write_tokens
        self.reasoning_tokens += u.reasoning_tokens
        self.cost += s.cost or 0
        self.cache_savings += s.savings
        self.estimated_calls += u.estimated
        self.unpriced_calls += s.cost is None
        self.errors += s.error is not None

    @classmethod
    def of(cls, row: ReportRow) -> Agg:
        return cls(row.calls, row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens,
                   row.reasoning_tokens, row.cost, row.cache_savings, row.estimated_calls, row.unpriced_calls,
                   row.errors)


Key = tuple[Any, ...]


def expect(specs: Iterable[Spec], key: Callable[[Spec], Key]) -> dict[Key, Agg]:
    out: dict[Key, Agg] = {}
    for s in specs:
        out.setdefault(key(s), Agg()).add(s)
    return out


def total_of(specs: Iterable[Spec]) -> Agg:
    agg = Agg()
    for s in specs:
        agg.add(s)
    return agg


def got(rep: Report) -> dict[Key, Agg]:
    out = {tuple(row.key[d] for d in rep.by): Agg.of(row) for row in rep.rows}
    assert len(out) == len(rep.rows), "a group appears twice"
    return out


def in_range(since: datetime | None = None, until: datetime | None = None) -> list[Spec]:
    return [s for s in SPECS if (since is None or s.when >= since) and (until is None or s.when < until)]


def by_cost(expected: dict[Key, Agg]) -> list[Key]:
    return [k for k, _ in sorted(expected.items(), key=lambda kv: (-kv[1].cost, kv[0]))]


# --- schema --------------------------------------------------------------------------------------------------

def test_new_database_gets_the_schema_and_reopening_is_a_no_op(ledger_url: str,
                                                                ledgers: Callable[[str], Ledger]) -> None:
    first = ledgers(ledger_url)
    first.ensure_schema()
    inspector = sa_inspect(first.engine)
    assert inspector.has_table("llmtally_usage") and inspector.has_table("llmtally_schema")
    indexes = {ix["name"] for ix in inspector.get_indexes("llmtally_usage")}
    assert {"ix_llmtally_usage_ts", "ix_llmtally_usage_tenant_day", "ix_llmtally_usage_month"} <= indexes
    with first.engine.connect() as conn:
        assert conn.execute(select(schema_version.c.version)).scalars().all() == [CURRENT_VERSION]
    insert_direct(first, SPECS[:3])

    again = ledgers(ledger_url)
    again.ensure_schema()
    with again.engine.begin() as conn:
        assert migrate(conn) == CURRENT_VERSION  # found current: nothing to do
        assert migrate(conn) == CURRENT_VERSION
    with again.engine.connect() as conn:
        assert conn.execute(select(schema_version.c.version)).scalars().all() == [CURRENT_VERSION]
    assert again.count() == 3  # data untouched


def test_a_newer_schema_is_refused_with_a_ledger_error(request: pytest.FixtureRequest, ledger_url: str,
                                                       ledgers: Callable[[str], Ledger]) -> None:
    ledgers(ledger_url).ensure_schema()
    with ledgers(ledger_url).engine.begin() as conn:
        conn.execute(schema_version.update().values(version=CURRENT_VERSION + 1))
    with pytest.raises(LedgerError, match="newer"):
        ledgers(ledger_url).ensure_schema()


def test_processes_opening_a_new_ledger_at_once_all_succeed(request: pytest.FixtureRequest, ledger_url: str,
                                                            ledgers: Callable[[str], Ledger]) -> None:
    errors: list[str] = []
    for _attempt in range(3):  # the race is lost nearly every time; three fresh starts make an escape unlikely
        opened = [ledgers(ledger_url) for _ in range(4)]  # four engines: four processes starting together
        barrier = threading.Barrier(len(opened))

        def open_it(ledger: Ledger, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                ledger.ensure_schema()
            except LedgerError as exc:
                errors.append(str(exc))

        threads = [threading.Thread(target=open_it, args=(ledger,)) for ledger in opened]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        if errors:
            break
        cleanup = ledgers(ledger_url)
        with cleanup.engine.begin() as conn:  # a fresh database again
            usage.drop(conn)
            schema_version.drop(conn)
        for ledger in (*opened, cleanup):
            ledger.dispose()
    assert errors == []


# --- idempotency ---------------------------------------------------------------------------------------------

def test_inserting_the_same_rows_again_leaves_one_copy(ledger_url: str, ledgers: Callable[[str], Ledger]) -> None:
    ledger = ledgers(ledger_url)
    rows = rows_of(SPECS)
    ledger.insert(rows)
    ledger.insert(rows)  # a retry after a lost acknowledgement
    ledger.insert(rows_of(SPECS[5:8]) + rows_of(SPECS[:2]))  # an overlapping retry
    assert ledger.count() == len(SPECS)
    assert Agg.of(ledger_report(ledger, by=[]).total) == total_of(SPECS)  # not doubled


def test_insert_returns_how_many_rows_were_new(request: pytest.FixtureRequest, ledger_url: str,
                                               ledgers: Callable[[str], Ledger]) -> None:
    ledger = ledgers(ledger_url)
    assert ledger.insert(rows_of(SPECS[:5])) == 5
    assert ledger.insert(rows_of(SPECS[:8])) == 3
    assert ledger.insert(rows_of(SPECS[:8])) == 0


def test_exporter_exporting_the_same_batch_twice_leaves_one_copy(ledger_url: str, ledgers: Callable[[str], Ledger],
                                                                 exporters: Callable[..., LedgerExporter]) -> None:
    batch = captured_batch(SPECS)
    exporter = exporters(ledger_url)
    assert exporter.export(batch) == LogRecordExportResult.SUCCESS
    assert exporter.export(batch) == LogRecordExportResult.SUCCESS  # the SDK retried, or two pipelines
    assert exporter.force_flush()
    assert exporter.export(batch) == LogRecordExportResult.SUCCESS  # again, after the first copy is in
    assert exporter.force_flush()
    ledger = ledgers(ledger_url)
    assert ledger.count() == len(SPECS)
    with ledger.engine.connect() as conn:
        ids = conn.execute(select(usage.c.id)).scalars().all()
    assert sorted(ids) == sorted(s.record_id for s in SPECS)


def test_every_field_survives_the_sdk_path(ledger_url: str, ledgers: Callable[[str], Ledger]) -> None:
    export_through_sdk(ledger_url, SPECS)
    ledger = ledgers(ledger_url)
    with ledger.engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(usage))}
    assert set(rows) == {s.record_id for s in SPECS}  # the ordinary log line was not a usage record
    for s in SPECS:
        r = rows[s.record_id]
        iso = s.when.isocalendar()
        assert (r.ts_ms, r.day, r.week, r.month) == (ms(s.when), f"{s.when:%Y-%m-%d}",
                                                     f"{iso[0]}-W{iso[1]:02d}", f"{s.when:%Y-%m}")
        assert (r.service, r.provider, r.operation, r.request_model, r.response_model, r.model) == (
            SERVICE, s.provider, "chat", s.model, s.response_model, s.ledger_model)
        assert (r.user_id, r.tenant_id, r.feature, r.session_id) == (s.user, s.tenant, s.feature, s.session)
        assert r.server_address == HOSTS[s.provider]
        u = s.usage
        assert (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens, r.reasoning_tokens) == (
            u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens)
        assert r.estimated is u.estimated and r.streaming is u.estimated
        if s.cost is None:
            assert (r.cost_status, r.cost_pico_usd, r.cost_decimal) == ("unpriced", None, None)
        else:
            assert r.cost_status == "priced" and r.cost_source == "local" and r.cost_currency == "USD"
            assert r.cost_pico_usd == s.cost * 10**12 and D(r.cost_decimal) == s.cost
            assert r.priced_as == s.priced_as
        assert (r.cache_savings_pico_usd or 0) == s.savings * 10**12
        assert r.error_type == s.error
        assert (r.trace_id, r.span_id) == (f"{s.trace_id:032x}", f"{s.span_id:016x}")
        assert r.duration_s == pytest.approx(1.5)


# --- reports -------------------------------------------------------------------------------------------------

def test_report_by_model(populated: Ledger) -> None:
    rep = ledger_report(populated, by=["model"])
    expected = expect(SPECS, lambda s: (s.ledger_model,))
    assert got(rep) == expected
    # The rejected call has no response model: it is grouped under the requested one.
    assert expected[(MINI,)].calls == 1 and expected[(MINI,)].errors == 1
    assert [tuple(r.key.values()) for r in rep.rows] == by_cost(expected)  # cost, high to low; ties by key
    assert rep.rows[0].key == {"model": SONNET_R} and rep.rows[0].cost == D("0.156") + D("0.06") + D("0.015")
    assert Agg.of(rep.total) == total_of(SPECS)


def test_report_by_tenant(populated: Ledger) -> None:
    rep = ledger_report(populated, by=["tenant"])
    expected = expect(SPECS, lambda s: (s.tenant,))
    assert got(rep) == expected
    assert [r.key["tenant"] for r in rep.rows] == ["acme", "globex", "initech", None]
    # acme: 0.00153 + 0.156 + 0.042 + 0 + 0.0006264 + 0.015
    assert rep.rows[0].cost == D("0.2151564")
    assert rep.rows[1].cost == D("0.00027") + D("0.0009") + D("0.06")  # globex


def test_report_by_day(populated: Ledger) -> None:
    rep = ledger_report(populated, by=["day"], order="key")
    expected = expect(SPECS, lambda s: (f"{s.when:%Y-%m-%d}",))
    assert got(rep) == expected
    assert [r.key["day"] for r in rep.rows] == ["2025-08-31", "2025-09-01", "2025-09-02", "2025-09-15",
                                                "2025-09-30", "2025-10-01", "2025-10-02"]
    assert rep.rows[1].cost == D("0.00027") + D("0.156") + D("0.042")  # 2025-09-01; the llama call is unpriced


def test_report_by_month_and_tenant(populated: Ledger) -> None:
    rep = ledger_report(populated, by=["month", "tenant"])
    expected = expect(SPECS, lambda s: (f"{s.when:%Y-%m}", s.tenant))
    assert got(rep) == expected
    assert expected[("2025-09", "acme")].cost == D("0.156") + D("0.042") + D("0.0006264")
    assert expected[("2025-09", "acme")].calls == 4
    assert Agg.of(rep.total) == total_of(SPECS)


def test_report_filters(populated: Ledger) -> None:
    acme = [s for s in SPECS if s.tenant == "acme"]
    rep = ledger_report(populated, by=["model"], filters={"tenant": "acme"})
    assert got(rep) == expect(acme, lambda s: (s.ledger_model,))
    assert Agg.of(rep.total) == total_of(acme)
    assert rep.total.cost == D("0.2151564") and rep.filters == {"tenant": "acme"}

    rep = ledger_report(populated, by=["user"], filters={"tenant": "acme", "feature": "chat"})
    assert got(rep) == expect([s for s in acme if s.feature == "chat"], lambda s: (s.user,))
    assert rep.total.calls == 3  # calls 1, 7 and 12

    assert ledger_report(populated, by=["model"], filters={"tenant": "umbrella"}).total.calls == 0
    with pytest.raises(ValueError, match="unknown dimension"):
        ledger_report(populated, by=["colour"])
    with pytest.raises(ValueError, match="unknown dimension"):
        ledger_report(populated, filters={"colour": "red"})
    with pytest.raises(ValueError, match="unknown order"):
        ledger_report(populated, order="price")


def test_since_is_inclusive_and_until_exclusive(populated: Ledger) -> None:
    since, until = at(2025, 9, 1), at(2025, 10, 1)
    rep = ledger_report(populated, by=["day"], since=since, until=until)
    inside = in_range(since, until)
    assert {s.n for s in inside} == {2, 3, 4, 5, 6, 7, 8, 9}
    # Call 2 ends exactly at `since` (in); call 9 one millisecond before `until` (in);
    # call 1 one millisecond before `since` (out); call 10 exactly at `until` (out).
    assert got(rep) == expect(inside, lambda s: (f"{s.when:%Y-%m-%d}",))
    assert Agg.of(rep.total) == total_of(inside)
    assert (rep.since, rep.until) == (since, until)

    one = BY_N[2].when
    assert ledger_report(populated, by=[], since=one, until=one + timedelta(milliseconds=1)).total.calls == 1
    assert ledger_report(populated, by=[], since=one - timedelta(milliseconds=1), until=one).total.calls == 1  # #1
    assert ledger_report(populated, by=[], since=one + timedelta(milliseconds=1), until=at(2025, 9, 1, 8, 30)
                         ).total.calls == 0  # call 3 ends exactly at that `until`
    assert ledger_report(populated, by=[], since=at(2025, 10, 1)).total.calls == 4  # calls 10 to 13


def test_top_n_by_cost(populated: Ledger) -> None:
    rep = ledger_report(populated, by=["model"], top=2)
    assert [r.key["model"] for r in rep.rows] == [SONNET_R, O3_R]
    assert [r.cost for r in rep.rows] == [D("0.231"), D("0.042") + D("0.0101")]
    assert Agg.of(rep.total) == total_of(SPECS)  # the total is over everything, not only the top rows

    rep = ledger_report(populated, by=["user"], top=3)
    expected = expect(SPECS, lambda s: (s.user,))
    assert [tuple(r.key.values()) for r in rep.rows] == by_cost(expected)[:3]
    assert [Agg.of(r) for r in rep.rows] == [expected[k] for k in by_cost(expected)[:3]]

    rep = ledger_report(populated, by=["tenant"], top=1, order="calls")
    assert rep.rows[0].key == {"tenant": "acme"} and rep.rows[0].calls == 6


def test_daily_oldest_first(populated: Ledger) -> None:
    rep = daily(populated)
    expected = expect(SPECS, lambda s: (f"{s.when:%Y-%m-%d}",))
    assert [tuple(r.key.values()) for r in rep.rows] == sorted(expected)
    assert got(rep) == expected
    rep = daily(populated, since=at(2025, 9, 2), filters={"tenant": "acme"})
    assert [r.key["day"] for r in rep.rows] == ["2025-09-02", "2025-09-30", "2025-10-02"]
    assert [r.cost for r in rep.rows] == [D(0), D("0.0006264"), D("0.015")]


def test_month_with_its_days_and_total(populated: Ledger) -> None:
    rep = month(populated, "2025-09")
    september = [s for s in SPECS if s.when.month == 9]
    assert [s.n for s in september] == [2, 3, 4, 5, 6, 7, 8, 9]  # not 1 (Aug 31 23:59:59.999) nor 10 (Oct 1 0:00)
    assert [r.key["day"] for r in rep.rows] == ["2025-09-01", "2025-09-02", "2025-09-15", "2025-09-30"]
    assert got(rep) == expect(september, lambda s: (f"{s.when:%Y-%m-%d}",))
    assert Agg.of(rep.total) == total_of(september)
    assert rep.total.cost == D("0.00027") + D("0.156") + D("0.042") + D("0.0009") + D("0.06") + D("0.0006264")
    assert rep.total.cost == D("0.2597964")

    august = month(populated, "2025-08")
    assert [r.key["day"] for r in august.rows] == ["2025-08-31"] and august.total.cost == D("0.00153")
    assert month(populated, "2025-10", filters={"tenant": "initech"}).total.cost == D("0.0101")
    empty = month(populated, "2025-12")
    assert empty.rows == [] and empty.total.calls == 0 and empty.total.cost == 0
    with pytest.raises(ValueError, match="not a month"):
        month(populated, "2025-13")


def test_estimated_and_unpriced_shares_cache_savings_and_errors(populated: Ledger) -> None:
    total = ledger_report(populated, by=[]).total
    assert total.calls == 13
    assert total.estimated_calls == 3  # calls 6, 12, 13
    assert total.unpriced_calls == 2  # the two llama calls
    assert total.estimated_share == pytest.approx(3 / 13) and total.unpriced_share == pytest.approx(2 / 13)
    assert total.errors == 1
    # cache savings = cache-read tokens x (input price - cache-read price)
    assert total.cache_savings == (D(10_000) * (D("0.15") - D("0.075")) + D(50_000) * (D(3) - D("0.30"))
                                   + D(2_048) * (D("0.15") - D("0.075")) + D(1_000) * (D(2) - D("0.50"))) / M
    assert total.cache_savings == D("0.1374036")

    rep = {r.key["tenant"]: r for r in ledger_report(populated, by=["tenant"]).rows}
    assert (rep["initech"].calls, rep["initech"].unpriced_calls, rep["initech"].estimated_calls) == (3, 2, 1)
    assert rep["initech"].unpriced_share == pytest.approx(2 / 3)
    assert rep["acme"].errors == 1 and rep["globex"].errors == 0
    assert rep["acme"].cache_savings == D("0.00075") + D("0.135") + D("0.0001536")
    assert rep["globex"].estimated_share == pytest.approx(1 / 3)
    assert rep["initech"].as_dict()["cost_usd"] == "0.0101"


def test_many_tiny_costs_sum_exactly(ledger_url: str, ledgers: Callable[[str], Ledger]) -> None:
    # 3,000 gpt-4o-mini calls of a few tokens each: $0.000000075 to $0.0000027 per call.
    tiny = [_spec(1000 + i, at(2025, 9, 3, millis=i), "openai", MINI, MINI_R, "acme", f"u-{i % 50}", "autocomplete",
                  U(1 + i % 7, cr=i % 2, out=i % 4)) for i in range(3000)]
    ledger = ledgers(ledger_url)
    insert_direct(ledger, tiny)
    exact = sum((s.cost or D(0) for s in tiny), D(0))
    total = ledger_report(ledger, by=[]).total
    assert total.calls == 3000 and isinstance(total.cost, Decimal)
    assert total.cost == exact
    # By hand: tokens summed over the cycle, times the price per 1M.
    uncached = sum(1 + i % 7 - i % 2 for i in range(3000))
    cached = sum(i % 2 for i in range(3000))
    output = sum(i % 4 for i in range(3000))
    assert exact == (uncached * D("0.15") + cached * D("0.075") + output * D("0.60")) / M
    users = ledger_report(ledger, by=["user"])
    assert sum((r.cost for r in users.rows), D(0)) == exact
    assert got(users) == expect(tiny, lambda s: (s.user,))


# --- the spool -----------------------------------------------------------------------------------------------

def test_rows_left_in_the_spool_by_a_crash_are_replayed(ledger_url: str, ledgers: Callable[[str], Ledger],
                                                        exporters: Callable[..., LedgerExporter]) -> None:
    spool = Spool.for_url(ledger_url)  # where the crashed process's exporter spooled them
    segments = [spool.write(rows_of(SPECS[0:4])), spool.write(rows_of(SPECS[4:9])), spool.write(rows_of(SPECS[9:]))]
    (spool.directory / "99999999999999999999-1-00000009.jsonl.tmp").write_text('{"id": "half-writ')  # died mid-write
    assert spool.segments() == segments

    exporter = exporters(ledger_url)  # the next process: replays at start, no export needed
    assert exporter.spool.directory == spool.directory
    assert exporter.force_flush(10_000)
    assert spool.segments() == [] and not any(p.exists() for p in segments)
    ledger = ledgers(ledger_url)
    assert ledger.count() == len(SPECS)
    assert Agg.of(ledger_report(ledger, by=[]).total) == total_of(SPECS)


def test_replay_moves_spooled_rows_into_the_ledger(ledger_url: str, ledgers: Callable[[str], Ledger]) -> None:
    """What `llmtally report` does first: what a crashed or offline run left on disk counts too."""
    spool = Spool.for_url(ledger_url)
    spool.write(rows_of(SPECS[:7]))
    spool.write(rows_of(SPECS[3:]))  # overlapping: a segment whose first insert committed but was not deleted
    ledger = ledgers(ledger_url)
    replay(ledger, spool)
    assert spool.segments() == [] and ledger.count() == len(SPECS)
    assert Agg.of(ledger_report(ledger, by=[]).total) == total_of(SPECS)
    replay(ledger, spool)  # nothing left: a no-op
    assert ledger.count() == len(SPECS)


def test_a_corrupt_segment_is_set_aside_and_does_not_block_the_others(
        ledger_url: str, ledgers: Callable[[str], Ledger], exporters: Callable[..., LedgerExporter]) -> None:
    spool = Spool.for_url(ledger_url)
    first_name = "00000000000000000001-1-00000000.jsonl"  # sorts before every real segment: replayed first
    truncated = spool.directory / first_name
    truncated.write_text(json.dumps(rows_of(SPECS[:1])[0])[:40] + "\n")  # cut off mid-row
    garbage = spool.directory / "00000000000000000002-1-00000000.jsonl"
    garbage.write_bytes(b"\xff\xfe\x00\x81 not json at all\n")
    good = [spool.write(rows_of(SPECS[:6])), spool.write(rows_of(SPECS[6:]))]

    exporter = exporters(ledger_url)
    assert exporter.force_flush(10_000)
    assert spool.segments() == []
    assert truncated.with_suffix(".bad").exists() and garbage.with_suffix(".bad").exists()
    assert not any(p.exists() for p in good)
    assert ledgers(ledger_url).count() == len(SPECS)


def test_an_oversized_attribution_value_does_not_block_the_ledger(
        request: pytest.FixtureRequest, ledger_url: str, ledgers: Callable[[str], Ledger],
        exporters: Callable[..., LedgerExporter]) -> None:
    long_user = "user:" + "x" * 300  # e.g. a JWT subject or a long e-mail used as user.id
    poison = call_record(BY_N[1])
    poison.attributes = {**poison.attributes, sc.USER_ID: long_user}
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    provider.get_logger("llmtally").emit(event_name=sc.USAGE_EVENT_NAME, attributes=usage_record_attributes(poison),
                                         timestamp=poison.end_time_ns)
    exporter = exporters(ledger_url, max_backoff_s=0.2)
    try:
        assert exporter.export(list(memory.get_finished_logs())) == LogRecordExportResult.SUCCESS
        assert exporter.export(captured_batch(SPECS[1:])) == LogRecordExportResult.SUCCESS  # later, good records
        exporter.force_flush(3_000)
        ledger = ledgers(ledger_url)
        with ledger.engine.connect() as conn:
            ids = set(conn.execute(select(usage.c.id)).scalars().all())
        assert {s.record_id for s in SPECS[1:]} <= ids  # the good records are in
        assert exporter.spool.segments() == []  # and the bad one is not retried forever
    finally:
        for segment in exporter.spool.segments():  # do not let teardown wait on it
            segment.unlink()
        provider.shutdown()


# --- the database goes down and comes back (PostgreSQL) -----------------------------------------------------

def _ids(url: str) -> list[str]:
    ledger = Ledger(url)
    try:
        with ledger.engine.connect() as conn:
            return list(conn.execute(select(usage.c.id)).scalars().all())
    finally:
        ledger.dispose()


def test_database_down_then_back_loses_nothing(postgres_server: PostgresServer, postgres_url: str,
                                               exporters: Callable[..., LedgerExporter]) -> None:
    before, during = captured_batch(SPECS[:5]), captured_batch(SPECS[5:])
    exporter = exporters(postgres_url)
    assert exporter.export(before) == LogRecordExportResult.SUCCESS
    assert exporter.force_flush(10_000)  # connected, schema made, pooled connections open
    try:
        postgres_server.stop()
        started = time.perf_counter()
        result = exporter.export(during)
        elapsed = time.perf_counter() - started
        assert result == LogRecordExportResult.SUCCESS
        # export() only spools to disk and returns; 2 s is a loose bound for a loaded 2-core machine.
        assert elapsed < 2.0, f"export() blocked {elapsed:.2f}s on a database that is down"
        assert exporter.force_flush(timeout_millis=500) is False
        assert exporter.spool.pending() >= 1  # the rows wait on disk
        # the writer tries (and fails) in the background: wait for it to say so
        wait_until(lambda: exporter.status()["spooled_segments"] >= 1 and exporter.status()["last_error"],
                   timeout=15, what="the writer to report the failed write", interval=0.05)
        assert exporter.status()["spooled_segments"] >= 1 and exporter.status()["last_error"]
    finally:
        postgres_server.start()
    assert exporter.force_flush() is True
    assert exporter.spool.segments() == []
    ids = _ids(postgres_url)
    assert sorted(ids) == sorted(s.record_id for s in SPECS)  # zero lost, none twice


def test_exporter_started_while_the_database_is_down(postgres_server: PostgresServer, postgres_url: str,
                                                     exporters: Callable[..., LedgerExporter]) -> None:
    batch = captured_batch(SPECS)
    try:
        postgres_server.stop()
        started = time.perf_counter()
        exporter = exporters(postgres_url)  # never connects on the caller's thread
        assert exporter.export(batch) == LogRecordExportResult.SUCCESS
        elapsed = time.perf_counter() - started
        assert elapsed < 2.0, f"starting and exporting blocked {elapsed:.2f}s on a database that is down"
        assert exporter.force_flush(timeout_millis=500) is False
    finally:
        postgres_server.start()
    assert exporter.force_flush() is True
    assert sorted(_ids(postgres_url)) == sorted(s.record_id for s in SPECS)


# --- bad URLs and unreachable databases ---------------------------------------------------------------------

@pytest.mark.parametrize(("url", "message"), [
    ("not a database url", "invalid ledger URL"),
    ("nosuchdb://user@host/ledger", "cannot use ledger URL"),
])
def test_a_bad_url_is_a_ledger_error(url: str, message: str) -> None:
    with pytest.raises(LedgerError, match=message) as info:
        Ledger(url)
    assert "\n" not in str(info.value)


def test_an_unreachable_postgresql_is_a_one_line_ledger_error_without_the_password() -> None:
    url = f"postgresql+psycopg://llmtally:s3cret-pw@127.0.0.1:{free_port()}/ledger"  # nothing listens there
    ledger = Ledger(url)  # opening never connects
    try:
        started = time.perf_counter()
        with pytest.raises(LedgerError) as info:
            ledger.ensure_schema()
        assert time.perf_counter() - started < 5
        message = str(info.value)
        assert "\n" not in message.strip()
        assert "s3cret-pw" not in message and "***" in message
        assert "cannot reach the ledger database" in message and "127.0.0.1" in message
        with pytest.raises(LedgerError) as info:
            ledger_report(ledger, by=["tenant"])
        assert "s3cret-pw" not in str(info.value)
    finally:
        ledger.dispose()


# --- parse_since ---------------------------------------------------------------------------------------------

NOW = datetime(2025, 9, 17, 15, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("7d", datetime(2025, 9, 10, 15, 30, 12, tzinfo=UTC)),
    (" 7D ", datetime(2025, 9, 10, 15, 30, 12, tzinfo=UTC)),
    ("24h", datetime(2025, 9, 16, 15, 30, 12, tzinfo=UTC)),
    ("90m", datetime(2025, 9, 17, 14, 0, 12, tzinfo=UTC)),
    ("2w", datetime(2025, 9, 3, 15, 30, 12, tzinfo=UTC)),
    ("today", datetime(2025, 9, 17, tzinfo=UTC)),
    ("month", datetime(2025, 9, 1, tzinfo=UTC)),
    ("2025-09-01", datetime(2025, 9, 1, tzinfo=UTC)),
    ("2025-09-01T12:00", datetime(2025, 9, 1, 12, tzinfo=UTC)),
    ("2025-09-01T12:00:00+02:00", datetime(2025, 9, 1, 10, tzinfo=UTC)),
])
def test_parse_since(text: str, expected: datetime) -> None:
    parsed = parse_since(text, now=NOW)
    assert parsed == expected and parsed.tzinfo is not None


def test_parse_since_defaults_to_now() -> None:
    assert abs(parse_since("7d") - (datetime.now(UTC) - timedelta(days=7))) < timedelta(seconds=5)


@pytest.mark.parametrize("text", ["yesterday", "", "7x", "-7d", "2025-13-01", "last month"])
def test_parse_since_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError, match="not a time"):
        parse_since(text, now=NOW)


# --- more bugs found while writing these tests (SQLite is enough to show them) -----------------------------

def test_an_in_memory_ledger_is_shared_by_the_writer_and_reports(exporters: Callable[..., LedgerExporter]) -> None:
    exporter = exporters("sqlite://")
    assert exporter.export(captured_batch(SPECS)) == LogRecordExportResult.SUCCESS
    assert exporter.force_flush(10_000)
    assert ledger_report(exporter.ledger, by=[]).total.calls == len(SPECS)


def test_a_usage_record_without_timestamp_is_filed_when_it_was_observed(
        tmp_path: Path, exporters: Callable[..., LedgerExporter]) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    exporter = exporters(url)
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("other-pipeline").emit(event_name=sc.USAGE_EVENT_NAME,
                                               attributes=usage_record_attributes(call_record(BY_N[2])))
    assert exporter.force_flush(10_000)
    rep = ledger_report(exporter.ledger, by=["day"], since=datetime.now(UTC) - timedelta(hours=1))
    assert rep.total.calls == 1


def test_replay_skips_a_segment_another_process_just_removed(tmp_path: Path, ledgers: Callable[[str], Ledger],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    spool = Spool.for_url(url)
    gone = spool.write(rows_of(SPECS[:6]))
    kept = spool.write(rows_of(SPECS[6:]))
    listed = spool.segments()
    gone.unlink()  # the app's writer committed and removed it between our listing and our read
    monkeypatch.setattr(spool, "segments", lambda: listed)
    ledger = ledgers(url)
    replay(ledger, spool)
    assert not kept.exists() and ledger.count() == len(SPECS) - 6
