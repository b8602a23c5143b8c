"""Reports as a table (rich), CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

from llmtally.ledger.reports import Report, ReportRow

FORMATS = ("table", "csv", "json")


def _money(amount: Decimal) -> str:
    text = format(amount.normalize(), "f") if amount else "0"
    if "." in text and len(text.split(".")[1]) < 2:
        text = f"{amount:.2f}"
    return f"${text}"


def _cost(row: ReportRow) -> str:
    # Calls without a price have no amount: never show them as $0.
    if row.calls and row.unpriced_calls == row.calls:
        return "unpriced"
    if row.calls and row.free_calls == row.calls:
        return "free"  # local models without a price file
    return _money(row.cost) + ("*" if row.unpriced_calls else "")


def _tokens(n: int) -> str:
    return f"{n:,}"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def render(report: Report, fmt: str = "table", title: str | None = None) -> str:
    if fmt == "json":
        return as_json(report)
    if fmt == "csv":
        return as_csv(report)
    if fmt == "table":
        return as_table(report, title)
    raise ValueError(f"unknown format {fmt!r}; use {', '.join(FORMATS)}")


def as_json(report: Report) -> str:
    payload: dict[str, Any] = {
        "by": report.by,
        "since": report.since.isoformat() if report.since else None,
        "until": report.until.isoformat() if report.until else None,
        "filters": report.filters,
        "rows": [r.as_dict() for r in report.rows],
        "total": report.total.as_dict(),
    }
    return json.dumps(payload, indent=2)


def as_csv(report: Report) -> str:
    out = io.StringIO()
    fields = [*report.by, *[k for k in ReportRow(key={}).as_dict() if k not in report.by]]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow(row.as_dict())
    return out.getvalue()


def as_table(report: Report, title: str | None = None) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_footer=bool(report.rows), header_style="bold", footer_style="bold")
    total = report.total
    for i, dim in enumerate(report.by):
        table.add_column(dim, footer="total" if i == 0 else "")
    for name, footer, justify in (
        ("calls", _tokens(total.calls), "right"),
        ("input", _tokens(total.input_tokens), "right"),
        ("cached", _tokens(total.cache_read_tokens), "right"),
        ("output", _tokens(total.output_tokens), "right"),
        ("reasoning", _tokens(total.reasoning_tokens), "right"),
        ("cost (USD)", _cost(total), "right"),
        ("cache savings", _money(total.cache_savings), "right"),
        ("estimated", _share(total.estimated_calls, total.calls), "right"),
        ("unpriced", _share(total.unpriced_calls, total.calls), "right"),
        ("errors", _tokens(total.errors), "right"),
    ):
        table.add_column(name, footer=footer, justify=justify)  # type: ignore[arg-type]
    for row in report.rows:
        table.add_row(*[str(row.key[d]) if row.key[d] is not None else "-" for d in report.by],
                      _tokens(row.calls), _tokens(row.input_tokens), _tokens(row.cache_read_tokens),
                      _tokens(row.output_tokens), _tokens(row.reasoning_tokens), _cost(row),
                      _money(row.cache_savings), _share(row.estimated_calls, row.calls),
                      _share(row.unpriced_calls, row.calls), _tokens(row.errors))
    console = Console(record=True, width=140, file=io.StringIO(), force_terminal=False, color_system=None)
    console.print(table)
    if total.unpriced_calls:
        console.print("* excludes unpriced calls (no known price: see `llmtally prices MODEL`)")
    return console.export_text()
