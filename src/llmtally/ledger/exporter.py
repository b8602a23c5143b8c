"""``LedgerExporter``: an OpenTelemetry log-record exporter that writes usage records to the ledger.

``export()`` runs on the log pipeline's own thread (never the app's). It inserts the batch's usage
records straight into the database, idempotently: once committed they are on disk. When the database
cannot be reached, the batch goes to the spool on disk instead, and further batches too (without
waiting on the database again) until a writer thread, retrying with backoff, has moved every spooled
row in; then direct inserts resume. Leftover segments (a crash or a SIGTERM while the database was down,
a database that never came back) are replayed by the next exporter or report on the same ledger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

from llmtally import semconv as sc
from llmtally.instrumentation._guard import logger, report_internal_error
from llmtally.ledger.rows import row_from_attributes
from llmtally.ledger.store import Ledger, LedgerError, RejectedRows, Spool, replay


class LedgerExporter(LogRecordExporter):
    """Writes ``llmtally.usage`` log records to the ledger (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, url: str | None = None, *, spool_dir: str | None = None, max_backoff_s: float = 5.0) -> None:
        self.ledger = Ledger(url)
        self.spool = Spool(spool_dir) if spool_dir else Spool.for_url(self.ledger.url)
        self._max_backoff = max_backoff_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self._degraded = bool(self.spool.segments())  # spooled rows first: a previous run left some
        self._start()  # also replays what a previous process left in the spool

    # --- LogRecordExporter ----------------------------------------------------------------------
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        rows = []
        for item in batch:
            record = item.log_record
            if record.event_name != sc.USAGE_EVENT_NAME:
                continue
            service = item.resource.attributes.get("service.name") if item.resource else None
            try:
                row = row_from_attributes(dict(record.attributes or {}),
                                          timestamp_ns=record.timestamp or record.observed_timestamp,
                                          service=str(service) if service is not None else None)
            except Exception as exc:
                report_internal_error("ledger.row", exc)
                continue
            if row is not None:
                rows.append(row)
        if not rows:
            return LogRecordExportResult.SUCCESS
        if not self._degraded:
            try:
                self.ledger.insert(rows)
                return LogRecordExportResult.SUCCESS
            except RejectedRows as exc:  # the good rows are in; keep the refused ones aside
                self.spool.set_aside(self.spool.directory / "export.jsonl", exc.rejected)
                return LogRecordExportResult.SUCCESS
            except LedgerError as exc:
                self._degraded = True
                self.last_error = str(exc)
                logger.warning("llmtally ledger: %s; usage records wait on disk and are retried", exc)
        try:
            self.spool.write(rows)
        except OSError as exc:
            report_internal_error("ledger.spool", exc)
            return LogRecordExportResult.FAILURE
        self._idle.clear()
        self._wake.set()
        return LogRecordExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every spooled row is in the database (False when it is unreachable meanwhile)."""
        deadline = time.monotonic() + timeout_millis / 1000
        while time.monotonic() < deadline:
            if not self.spool.segments():
                return True
            self._wake.set()
            self._idle.wait(0.05)
        return not self.spool.segments()

    def shutdown(self) -> None:
        self.force_flush(5_000)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.spool.segments():
            logger.warning("llmtally ledger: %d batch(es) of usage records stay spooled in %s (database: %s); "
                           "they are written the next time the ledger is used", len(self.spool.segments()),
                           self.spool.directory, self.last_error or "not reached")
        self.ledger.dispose()

    # --- the writer ----------------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llmtally-ledger", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            try:
                replay(self.ledger, self.spool)
                if not self.spool.segments():
                    self._degraded = False  # caught up: export() inserts directly again
                self.last_error = None
                backoff = 0.05
                self._idle.set()
                self._wake.wait(0.5)
                self._wake.clear()
            except LedgerError as exc:
                if self.last_error is None:
                    logger.warning("llmtally ledger: %s; usage records wait on disk and are retried", exc)
                self._degraded = True
                self.last_error = str(exc)
                self._idle.set()
                self._wake.wait(backoff)  # a flush wakes it: the retry starts at once
                self._wake.clear()
                backoff = min(backoff * 2, self._max_backoff)
            except Exception as exc:  # never let the writer die
                report_internal_error("ledger.writer", exc)
                self._stop.wait(1.0)

    def status(self) -> dict[str, Any]:
        return {"url": self.ledger.url, "spooled_segments": len(self.spool.segments()), "last_error": self.last_error}
