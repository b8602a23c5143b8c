"""The PostgreSQL test infrastructure itself (tests/pg.py): a real server, reached through SQLAlchemy + psycopg."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from tests import pg
from tests.pg import PostgresServer

metadata = sa.MetaData()
calls = sa.Table(
    "calls",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("input_tokens", sa.BigInteger, nullable=False),
    sa.Column("cost", sa.Numeric(20, 10), nullable=False),
)


def _engine(url: str) -> Engine:
    # A short connect timeout, so a stopped server fails fast instead of hanging.
    return sa.create_engine(url, connect_args={"connect_timeout": 2})


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    eng = _engine(postgres_url)
    yield eng
    eng.dispose()


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((pg.HOST, port)) == 0


def test_server_url_points_at_the_llmtally_database_on_loopback(postgres_server: PostgresServer) -> None:
    assert postgres_server.is_running
    url = sa.make_url(postgres_server.url)
    assert (url.drivername, url.username, url.host, url.port, url.database) == (
        "postgresql+psycopg", "postgres", "127.0.0.1", postgres_server.port, "llmtally")
    eng = _engine(postgres_server.url)
    try:
        with eng.connect() as conn:
            assert conn.scalar(sa.text("SELECT current_database()")) == "llmtally"
            assert conn.scalar(sa.text("SHOW listen_addresses")) == "127.0.0.1"
            assert conn.scalar(sa.text("SELECT current_setting('server_version_num')::int")) >= 120000
            assert eng.dialect.driver == "psycopg"
    finally:
        eng.dispose()


def test_create_insert_select(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(calls.insert(), [
            {"model": "gpt-4o", "input_tokens": 1200, "cost": "0.003"},
            {"model": "claude-sonnet-4", "input_tokens": 2**40, "cost": "0.0000000001"},
        ])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(calls.c.model, calls.c.input_tokens, calls.c.cost).order_by(calls.c.id)).all()
    assert [tuple(r) for r in rows] == [
        ("gpt-4o", 1200, Decimal("0.003")),
        ("claude-sonnet-4", 2**40, Decimal("0.0000000001")),
    ]


def test_each_test_gets_a_fresh_empty_database(postgres_server: PostgresServer, engine: Engine) -> None:
    # test_create_insert_select made a table in its own database; this one sees none.
    assert sa.inspect(engine).get_table_names() == []
    assert engine.url.database != "llmtally"
    assert engine.url.database in postgres_server.psql("SELECT datname FROM pg_database").split()


def test_stop_makes_connections_fail_and_start_brings_the_same_data_back(
        postgres_server: PostgresServer, postgres_url: str) -> None:
    port = postgres_server.port
    eng = _engine(postgres_url)
    try:
        metadata.create_all(eng)
        with eng.begin() as conn:
            conn.execute(calls.insert(), [{"model": "m", "input_tokens": 7, "cost": "1.5"}])
        held = eng.connect()  # a session open across the outage
        postgres_server.stop()
        assert not postgres_server.is_running
        assert not _listening(port or 0)
        postgres_server.stop()  # stopping a stopped server is a no-op
        eng.dispose()
        with pytest.raises(sa.exc.OperationalError), eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        with pytest.raises(sa.exc.DBAPIError):
            held.execute(sa.text("SELECT 1"))
        held.close()

        postgres_server.start()
        assert postgres_server.is_running
        assert postgres_server.port == port
        assert sa.make_url(postgres_server.url).port == port
        with eng.connect() as conn:  # the pool recovers: same port, same data directory, same rows
            assert conn.execute(sa.select(calls.c.model, calls.c.input_tokens)).all() == [("m", 7)]
    finally:
        eng.dispose()
        postgres_server.start()  # leave it running for the rest of the session


def test_cleanup_stops_the_server_and_removes_its_directory() -> None:
    server = PostgresServer(pg.require_bindir())
    with server:
        assert server.is_running
        assert server.tmpdir.is_dir()
        port = server.port
        assert port is not None and _listening(port)
    assert not server.tmpdir.exists()
    assert not _listening(port)
    server.cleanup()  # idempotent


def test_missing_binaries_skip_loudly_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "find_bindir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y postgresql"):
        pg.require_bindir()


def test_missing_binaries_fail_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "find_bindir", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must install the 'postgresql' Debian package"):
        pg.require_bindir()


def test_finds_the_highest_installed_version() -> None:
    bindir = pg.find_bindir()
    if bindir is None:
        pg.require_bindir()
    assert bindir is not None
    assert all((bindir / name).exists() for name in ("initdb", "pg_ctl", "postgres"))
