"""The ledger database and its on-disk spool.

``Ledger`` owns the SQLAlchemy engine (SQLite by default, PostgreSQL by URL), migrates the schema when
opened, and inserts rows idempotently (``ON CONFLICT DO NOTHING`` on the record id). ``Spool`` is a
directory of append-once segment files: rows are on disk before the exporter returns, and leave the
spool only after the database committed them, so a crash or an unreachable database loses nothing.
"""

from __future__ import annotations

import contextlib
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
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)

from llmtally.ledger.schema import migrate, usage

ENV_LEDGER_URL = "LLMTALLY_LEDGER_URL"


class LedgerError(Exception):
    """A ledger problem worth one clear line: a bad URL, an unreachable database."""


class LedgerUnavailable(LedgerError):
    """The database cannot be reached now: keep the rows and retry."""


class RejectedRows(LedgerError):
    """The database refused some rows themselves (every other row was inserted)."""

    def __init__(self, added: int, rejected: list[tuple[dict[str, Any], str]]) -> None:
        self.added, self.rejected = added, rejected
        super().__init__(f"{len(rejected)} usage record(s) refused by the database: {rejected[0][1]}")


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
                kwargs["connect_args"] = {"connect_timeout": 3}
            if self.dialect == "sqlite" and parsed.database in (None, "", ":memory:"):
                # An in-memory database exists per connection: share one between the writer and reports.
                from sqlalchemy.pool import StaticPool

                kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
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
            for attempt in range(3):
                try:
                    with self.engine.begin() as conn:
                        migrate(conn)
                    break
                except RuntimeError as exc:  # a schema newer than this llmtally
                    raise LedgerError(f"{redact(self.url)}: {exc}") from None
                except (DBAPIError, SQLAlchemyError) as exc:
                    # Another process creating the schema at the same moment, or holding a lock: the next
                    # attempt sees its work. Anything else (a refused connection) fails at once.
                    if attempt == 2 or not _racing(exc):
                        verb = "reach" if isinstance(exc, (OperationalError, InterfaceError)) else "set up"
                        raise LedgerError(f"cannot {verb} the ledger database {redact(self.url)}: "
                                          f"{_reason(exc)}") from None
                    time.sleep(0.2 * (attempt + 1))
            self._schema_ready = True

    def insert(self, rows: Sequence[dict[str, Any]], chunk: int = 1000) -> int:
        """Insert rows, skipping ids already present; returns how many were new.

        Raises :class:`LedgerUnavailable` when the database cannot be reached (retry later) and
        :class:`RejectedRows` when it refused some rows themselves; the good ones are in by then."""
        if not rows:
            return 0
        self.ensure_schema()
        try:
            return self._insert(rows, chunk)
        except (OperationalError, InterfaceError) as exc:
            raise LedgerUnavailable(f"cannot write to the ledger database {redact(self.url)}: "
                                    f"{_reason(exc)}") from None
        except (DBAPIError, SQLAlchemyError):
            pass  # a row the database refuses (a value it cannot store): find it, keep the rest
        added, rejected = 0, []
        for row in rows:
            try:
                added += self._insert([row], 1)
            except (OperationalError, InterfaceError) as exc:
                raise LedgerUnavailable(f"cannot write to the ledger database {redact(self.url)}: "
                                        f"{_reason(exc)}") from None
            except (DBAPIError, SQLAlchemyError) as exc:
                rejected.append((row, _reason(exc)))
        raise RejectedRows(added, rejected)

    def _insert(self, rows: Sequence[dict[str, Any]], chunk: int) -> int:
        added = 0
        statement = self._idempotent_insert()
        with self.engine.begin() as conn:
            for start in range(0, len(rows), chunk):
                result = conn.execute(statement, list(rows[start:start + chunk]))
                if result.returns_rows:
                    added += len(result.all())  # RETURNING: psycopg reports no executemany rowcount
                else:
                    added += max(result.rowcount, 0)  # sqlite3 counts the rows executemany changed
        return added

    def _idempotent_insert(self) -> Any:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(usage).on_conflict_do_nothing(index_elements=["id"])
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(usage).on_conflict_do_nothing(index_elements=["id"]).returning(usage.c.id)
        return insert(usage).prefix_with("IGNORE") if self.dialect == "mysql" else insert(usage)

    def count(self) -> int:
        self.ensure_schema()
        from sqlalchemy import func

        try:
            with self.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(usage)).scalar() or 0)
        except (DBAPIError, SQLAlchemyError) as exc:
            raise LedgerError(f"cannot read the ledger database {redact(self.url)}: {_reason(exc)}") from None

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")  # first: switching to WAL itself can meet a lock
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (reports) never block the writer
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _racing(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("already exists", "duplicate", "locked", "busy", "unique"))


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

    def set_aside(self, segment: Path, rejected: list[tuple[dict[str, Any], str]]) -> Path:
        """Keep rows the database refused, with the reason, for inspection."""
        bad = segment.with_suffix(".bad")
        with open(bad, "a", encoding="utf-8") as f:
            for row, reason in rejected:
                f.write(json.dumps({"reason": reason, "row": row}, default=str))
                f.write("\n")
        return bad


def replay(ledger: Ledger, spool: Spool) -> int:
    """Insert every spooled segment and delete it once committed; returns rows added.

    Raises :class:`LedgerUnavailable` (rows stay spooled). Rows the database refuses are written to a
    ``.bad`` file beside the spool and do not block the others."""
    added = 0
    for segment in spool.segments():
        try:
            rows = Spool.read(segment)
        except FileNotFoundError:
            continue  # another writer on the same ledger took it
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                segment.rename(segment.with_suffix(".bad"))  # keep it for inspection, never retry forever
            continue
        try:
            added += ledger.insert(rows)
        except RejectedRows as exc:
            added += exc.added
            spool.set_aside(segment, exc.rejected)
        segment.unlink(missing_ok=True)
    return added
