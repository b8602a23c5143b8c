"""The embedded usage ledger: usage records in SQL (SQLite by default, PostgreSQL by URL) and reports.

    from llmtally.ledger import Ledger, report
    print(report(Ledger(), by=["tenant"], since=parse_since("month")).total.cost)
"""

from llmtally.ledger.exporter import LedgerExporter
from llmtally.ledger.reports import DIMENSIONS, Report, ReportRow, daily, month, parse_since, report
from llmtally.ledger.store import Ledger, LedgerError, Spool, default_url, replay

__all__ = [
    "DIMENSIONS",
    "Ledger",
    "LedgerError",
    "LedgerExporter",
    "Report",
    "ReportRow",
    "Spool",
    "daily",
    "default_url",
    "month",
    "parse_since",
    "replay",
    "report",
]
