"""Benchmark: usage records written to the embedded ledger (SQLite, a temporary file), in records per second.

Two paths, each into a fresh database:
  (a) ``Ledger.insert`` of prepared rows, in batches (``--batch``, default 512);
  (b) the full exporter path: ``LedgerExporter.export(batch)`` for every batch of 512 log records (what an
      SDK ``BatchLogRecordProcessor`` hands it: rows built from the attributes and inserted directly), then
      ``force_flush()``. While the database is unreachable the exporter spools instead: the spool's write and
      read costs are printed for that (degraded) path.
Records are realistic usage records: ``CallRecord``s priced by the real ``PriceBook``, their attributes built by
``usage_record_attributes``, spread over tenants, users, features, models and 30 days, every one distinct.
Also printed: what ``export()`` costs the log pipeline's thread per record, and the row building alone.

Run: python bench/bench_ledger.py [--records 50000] [--batch 512] [--json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import Resource

from _report import report  # type: ignore[import-not-found]
from llmtally import semconv as sc
from llmtally.instrumentation.call import CallRecord
from llmtally.ledger import Ledger, LedgerExporter, Spool
from llmtally.ledger.rows import row_from_attributes
from llmtally.pricing import PriceBook
from llmtally.processor import usage_record_attributes
from llmtally.usage import Usage

TARGET_RECORDS_PER_S = 20_000
EXPORT_BATCH = 512  # BatchLogRecordProcessor's default max_export_batch_size
START = datetime(2025, 9, 1, tzinfo=timezone.utc)
MODELS = [  # (provider, requested, responded, host)
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "api.openai.com"),
    ("openai", "o3", "o3-2025-04-16", "api.openai.com"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929", "api.anthropic.com"),
    ("ollama", "llama3.1:8b", "llama3.1:8b", "localhost"),  # free: a local model, amount 0
    ("openai_compatible", "acme-llama-ft", "acme-llama-ft", "gpu-box.internal"),  # unpriced: NULL amount
]
FEATURES = ["chat", "search", "summarise", "agent", "autocomplete"]


def call_records(n: int) -> list[CallRecord]:
    book = PriceBook()
    records = []
    for i in range(n):
        provider, model, response_model, host = MODELS[i % len(MODELS)]
        end = START + timedelta(seconds=i * 30 * 86_400 // max(n, 1), milliseconds=i % 1000)
        start = end - timedelta(seconds=1.2)
        streaming = i % 3 == 0
        usage = Usage.build(input_tokens=800 + i % 5000, output_tokens=50 + i % 700,
                            cache_read_tokens=(i % 4) * 256, reasoning_tokens=(i % 200 if model == "o3" else 0),
                            estimated=streaming and i % 10 == 0)
        error = "RateLimitError" if i % 97 == 0 else None
        user = f"user-{i % 200}"
        attributes = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: provider,
                      sc.GEN_AI_REQUEST_MODEL: model, sc.USER_ID: user, sc.LLMTALLY_TENANT_ID: f"tenant-{i % 20}",
                      sc.LLMTALLY_FEATURE: FEATURES[i % len(FEATURES)], sc.SESSION_ID: f"{user}-s{i // 1000}"}
        records.append(CallRecord(
            provider=provider, operation="chat", request_model=model, response_model=response_model,
            response_id=f"resp-{i}", server_address=host, server_port=443, usage=usage,
            cost=book.cost(usage, provider=provider, request_model=model, response_model=response_model, at=start),
            streaming=streaming, start_time_ns=_ns(start), end_time_ns=_ns(end), duration_s=1.2,
            time_to_first_chunk_s=0.2 if streaming else None, error_type=error,
            error_message="Rate limit reached" if error else None, trace_id=(0x5A << 120) + i, span_id=0x1000 + i,
            sampled=True, attributes=attributes))
    return records


def _ns(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1) * 1000


def bench_insert(directory: Path, records: list[CallRecord], batch: int) -> tuple[float, float]:
    """(records/s of Ledger.insert, microseconds per row to build the rows)."""
    attributes = [(usage_record_attributes(r), r.end_time_ns) for r in records]
    started = time.perf_counter()
    rows = [row for attrs, ts in attributes if (row := row_from_attributes(attrs, timestamp_ns=ts)) is not None]
    build_us = (time.perf_counter() - started) / len(records) * 1e6
    ledger = Ledger(f"sqlite:///{directory / 'insert.sqlite'}")
    ledger.ensure_schema()
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        ledger.insert(rows[i:i + batch])
    elapsed = time.perf_counter() - started
    assert ledger.count() == len(records), "rows missing after insert"
    ledger.dispose()
    return len(records) / elapsed, build_us


def bench_spool(directory: Path, records: list[CallRecord], batch: int) -> tuple[float, float]:
    """(microseconds per row to write spool segments, and to read them back): the exporter's extra hops."""
    rows = [row_from_attributes(usage_record_attributes(r), timestamp_ns=r.end_time_ns) for r in records]
    spool = Spool(directory / "bench.spool")
    started = time.perf_counter()
    segments = [spool.write(row for row in rows[i:i + batch] if row is not None) for i in range(0, len(rows), batch)]
    write_us = (time.perf_counter() - started) / len(rows) * 1e6
    started = time.perf_counter()
    read = sum(len(Spool.read(segment)) for segment in segments)
    read_us = (time.perf_counter() - started) / len(rows) * 1e6
    assert read == len(rows)
    return write_us, read_us


def bench_exporter(directory: Path, records: list[CallRecord], batch: int) -> tuple[float, float]:
    """(records/s of export() + writer until force_flush(), microseconds of export() per record)."""
    resource = Resource.create({"service.name": "bench"})
    batches = []
    for i in range(0, len(records), batch):
        batches.append([ReadableLogRecord(LogRecord(timestamp=r.end_time_ns, observed_timestamp=r.end_time_ns,
                                                    event_name=sc.USAGE_EVENT_NAME,
                                                    attributes=usage_record_attributes(r)), resource=resource)
                        for r in records[i:i + batch]])
    url = f"sqlite:///{directory / 'exporter.sqlite'}"
    exporter = LedgerExporter(url)
    exporter.ledger.ensure_schema()  # opened once, as a running app's would be
    export_s = 0.0
    started = time.perf_counter()
    for items in batches:
        t0 = time.perf_counter()
        exporter.export(items)
        export_s += time.perf_counter() - t0
    flushed = exporter.force_flush(timeout_millis=600_000)
    elapsed = time.perf_counter() - started
    assert flushed, f"writer did not drain the spool: {exporter.status()}"
    exporter.shutdown()
    ledger = Ledger(url)
    assert ledger.count() == len(records), "records lost on the exporter path"
    ledger.dispose()
    return len(records) / elapsed, export_s / len(records) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=EXPORT_BATCH, help="rows per Ledger.insert call in path (a)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    records = call_records(args.records)
    results: dict[str, float] = {"records": args.records}
    with tempfile.TemporaryDirectory(prefix="llmtally-bench-ledger-") as tmp:
        directory = Path(tmp)
        insert_rate, build_us = bench_insert(directory, records, args.batch)
        exporter_rate, export_us = bench_exporter(directory, records, EXPORT_BATCH)
        spool_write_us, spool_read_us = bench_spool(directory, records, EXPORT_BATCH)
    results[f"(a) Ledger.insert, batches of {args.batch}: records/s"] = round(insert_rate)
    results[f"(b) exporter: export({EXPORT_BATCH}) + writer to force_flush: records/s"] = round(exporter_rate)
    results["target_records_per_s"] = TARGET_RECORDS_PER_S
    results["(b) export() on the log pipeline thread: us/record"] = round(export_us, 2)
    results["  of which row building (attributes -> row): us/record"] = round(build_us, 2)
    results["  of which Ledger.insert (= path a): us/record"] = round(1e6 / insert_rate, 2)
    results["degraded path (database down): spool write us/record"] = round(spool_write_us, 2)
    results["degraded path: spool read on replay us/record"] = round(spool_read_us, 2)
    report(results, args.json, width=66)


if __name__ == "__main__":
    main()
