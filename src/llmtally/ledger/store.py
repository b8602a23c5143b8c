"""The ledger database and its on-disk spool.

``Ledger`` owns the SQLAlchemy engine (SQLite by default, PostgreSQL by URL), migrates the schema when
opened, and inserts rows idempotently (``ON CONFLICT DO NOTHING`` on the record id). ``Spool`` is a
directory of append-once segment files: rows are on disk before the exporter returns, and leave the
spool only after the database committed them, so a crash or an unreachable database loses nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from llmtally.ledger.schema import migrate, usage

ENV_LEDGER_URL = "LLMTALLY_LEDGER_URL"


class LedgerError(Exception):
    """A ledger problem worth one clear line: a bad URL, an unreachable database."""


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "llmtally"


def default_url() -> str:
    """``LLMTALLY_LEDGER_URL``, else a SQLite file in the user's data directory."""
    return os.environ.get(ENV_LEDGER_URL) or f"sqlite:///{data_dir() / 'ledger.sqlite'}"


def redact(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


class Ledger:
    """A usage ledger database. Opening it never connects; ``ensure_schema()`` does, once."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_url()
        try:
            parsed = make_url(self.url)
        except ArgumentError:
            raise LedgerError(f"invalid ledger URL {self.url!r} (expected e.g. sqlite:///path/ledger.sqlite "
                              "or postgresql+psycopg://user@host/db)") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite" and parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if self.dialect == "postgresql":
                kwargs["connect_args"] = {"connect_timeout": 5}
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise LedgerError(f"cannot use ledger URL {redact(self.url)}: {exc}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._schema_ready = False
        self._lock = threading.Lock()

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._lock:
            if self._schema_ready:
                return
            try:
                with self.engine.begin() as conn:
                    migrate(conn)
            except (DBAPIError, SQLAlchemyError) as exc:
                raise LedgerError(f"cannot reach the ledger database {redact(self.url)}: {_reason(exc)}") from None
            self._schema_ready = True

    def insert(self, rows: Sequence[dict[str, Any]], chunk: int = 1000) -> int:
        """Insert rows, skipping ids already present; returns how many were new. Raises LedgerError."""
        if not rows:
            return 0
        self.ensure_schema()
        added = 0
        try:
            with self.engine.begin() as conn:
                for start in range(0, len(rows), chunk):
                    part = list(rows[start:start + chunk])
                    result = conn.execute(self._idempotent_insert(), part)
                    added += max(result.rowcount, 0) if result.rowcount is not None else 0
        except (DBAPIError, SQLAlchemyError) as exc:
            raise LedgerError(f"cannot write to the ledger database {redact(self.url)}: {_reason(exc)}") from None
        return added

    def _idempotent_insert(self) -> Any:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(usage).on_conflict_do_nothing(index_elements=["id"])
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(usage).on_conflict_do_nothing(index_elements=["id"])
        return insert(usage).prefix_with("IGNORE") if self.dialect == "mysql" else insert(usage)

    def count(self) -> int:
        self.ensure_schema()
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(usage)).scalar() or 0)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (reports) never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Spool:
    """Segment files of JSON-lines rows, written atomically (temp file + rename)."""

    _counter = itertools.count()

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    @classmethod
    def for_url(cls, url: str) -> Spool:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
            return cls(Path(parsed.database).expanduser().with_suffix(".spool"))
        digest = hashlib.sha256(redact(url).encode()).hexdigest()[:16]  # no secrets in paths
        return cls(data_dir() / "spool" / digest)

    def write(self, rows: Iterable[dict[str, Any]]) -> Path:
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):08d}.jsonl"
        tmp = self.directory / (name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, separators=(",", ":")))
                f.write("\n")
            f.flush()
        final = self.directory / name
        os.replace(tmp, final)  # atomic: a segment is complete or absent
        return final

    def segments(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl"))

    @staticmethod
    def read(segment: Path) -> list[dict[str, Any]]:
        rows = []
        with open(segment, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
        return rows

    def pending(self) -> int:
        return len(self.segments())


def replay(ledger: Ledger, spool: Spool) -> int:
    """Insert every spooled segment and delete it once committed; returns rows added. Raises LedgerError."""
    added = 0
    for segment in spool.segments():
        try:
            rows = Spool.read(segment)
        except (OSError, ValueError):
            segment.rename(segment.with_suffix(".bad"))  # keep it for inspection, never retry forever
            continue
        added += ledger.insert(rows)
        segment.unlink(missing_ok=True)
    return added
