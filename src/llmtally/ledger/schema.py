"""The ledger's SQL schema (SQLAlchemy Core; SQLite and PostgreSQL) and its versioned migrations.

One row per LLM call, keyed by the usage record id (trace id + span id), so a retried write never
inserts twice. Money is stored exactly: ``cost_pico_usd`` (integer pico-dollars, summed exactly by both
databases) plus the exact decimal string. UTC ``day``/``week``/``month`` are computed at insert so
reports group the same way on every database and can use indexes.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
)

metadata = MetaData()

usage = Table(
    "llmtally_usage",
    metadata,
    Column("id", String(64), primary_key=True),  # llmtally.record.id: idempotency key
    Column("ts_ms", BigInteger, nullable=False),  # end of the call, ms since the epoch (UTC)
    Column("day", String(10), nullable=False),  # YYYY-MM-DD (UTC)
    Column("week", String(8), nullable=False),  # ISO week, YYYY-Www
    Column("month", String(7), nullable=False),  # YYYY-MM
    Column("service", String(200)),
    Column("provider", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("request_model", String(200)),
    Column("response_model", String(200)),
    Column("model", String(200), nullable=False),  # response model, else request model
    Column("server_address", String(255)),
    Column("user_id", String(255)),
    Column("tenant_id", String(255)),
    Column("session_id", String(255)),
    Column("conversation_id", String(255)),
    Column("feature", String(255)),
    Column("extra", Text),  # other attribution (llmtally.*) as JSON
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cache_write_1h_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("estimated", Boolean, nullable=False),
    Column("cost_status", String(16), nullable=False),  # priced | unpriced
    Column("cost_source", String(16)),  # provider | local
    Column("cost_currency", String(8)),
    Column("cost_decimal", String(64)),  # exact amount
    Column("cost_pico_usd", BigInteger),  # exact amount in 1e-12 USD; NULL when unpriced
    Column("cache_savings_pico_usd", BigInteger),
    Column("cost_breakdown", Text),  # per-leaf decimal strings as JSON
    Column("price_catalog", String(200)),
    Column("priced_as", String(200)),
    Column("duration_s", Float),
    Column("ttfc_s", Float),
    Column("streaming", Boolean, nullable=False),
    Column("error_type", String(200)),
    Column("error_message", Text),
    Column("trace_id", String(32)),
    Column("span_id", String(16)),
)

Index("ix_llmtally_usage_ts", usage.c.ts_ms)
Index("ix_llmtally_usage_day", usage.c.day)
Index("ix_llmtally_usage_month", usage.c.month)
Index("ix_llmtally_usage_tenant_day", usage.c.tenant_id, usage.c.day)
Index("ix_llmtally_usage_user_day", usage.c.user_id, usage.c.day)
Index("ix_llmtally_usage_model_day", usage.c.model, usage.c.day)
Index("ix_llmtally_usage_feature_day", usage.c.feature, usage.c.day)

schema_version = Table(
    "llmtally_schema",
    metadata,
    Column("version", Integer, primary_key=True),
)


def _v1(conn: Connection) -> None:
    usage.create(conn, checkfirst=True)
    for index in usage.indexes:
        index.create(conn, checkfirst=True)


# Each migration moves the schema from version i to i + 1; append, never edit.
MIGRATIONS: list[Callable[[Connection], None]] = [_v1]
CURRENT_VERSION = len(MIGRATIONS)


def migrate(conn: Connection) -> int:
    """Bring the schema to CURRENT_VERSION inside the caller's transaction; returns the version found."""
    schema_version.create(conn, checkfirst=True)
    found = conn.execute(select(schema_version.c.version)).scalar()
    version = int(found or 0)
    if version > CURRENT_VERSION:
        raise RuntimeError(f"ledger schema version {version} is newer than this llmtally ({CURRENT_VERSION})")
    for step in MIGRATIONS[version:]:
        step(conn)
    if version != CURRENT_VERSION:
        conn.execute(schema_version.delete())
        conn.execute(schema_version.insert().values(version=CURRENT_VERSION))
    return version


def has_schema(conn: Connection) -> bool:
    return inspect(conn).has_table(usage.name)
