"""Benchmark: the usage processor's cost per call (metrics + one usage log record).

The processor does its work off the app's thread, so two numbers per path, both medians per call:
  * hot path: what record() / on_end() cost the thread that made the LLM call (an enqueue);
  * processing: what the worker then spends per call on metrics and the usage record (SDK
    MeterProvider with an in-memory reader; SDK LoggerProvider with SimpleLogRecordProcessor into an
    in-memory exporter), measured by draining a queue of N calls. This is real CPU, only moved.
Paths: an llmtally call (record), the same with usage records off, and a peer span (on_end:
conversion + pricing + the same metrics and record).

Run: python bench/bench_processor.py [--batches 30] [--batch-size 2000] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from _report import report  # type: ignore[import-not-found]
from llmtally.instrumentation.call import CallRecord
from llmtally.pricing import Cost
from llmtally.processor import UsageSpanProcessor
from llmtally.usage import Usage

RECORD = CallRecord(
    provider="openai", operation="chat", request_model="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18",
    response_id="chatcmpl-1", server_address="api.openai.com", server_port=443,
    usage=Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024, reasoning_tokens=200),
    cost=Cost(status="priced", amount=Decimal("0.0002832"), source="local",
              breakdown={"uncached_input": Decimal("0.0000264"), "cache_read": Decimal("0.0000768"),
                         "cache_write": Decimal(0), "output": Decimal("0.00006"), "reasoning": Decimal("0.00012")},
              priced_as="gpt-4o-mini", catalog="genai-prices 0.2.3",
              cache_savings=Decimal("0.0000768")),  # 1024 cached x ($0.15 - $0.075) / 1M: the savings path
    streaming=True, start_time_ns=1, end_time_ns=2, duration_s=0.8, time_to_first_chunk_s=0.2, error_type=None,
    error_message=None, trace_id=0x1234, span_id=0x5678, sampled=True,
    attributes={"gen_ai.operation.name": "chat", "user.id": "u-1", "llmtally.tenant.id": "acme"},
)



def make(emit: bool) -> tuple[UsageSpanProcessor, InMemoryLogRecordExporter]:
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return UsageSpanProcessor(meter_provider=meter_provider, logger_provider=logger_provider,
                              emit_usage_records=emit), exporter


def hot_and_processing(processor: UsageSpanProcessor, submit: Callable[[], object], batches: int,
                       size: int) -> tuple[float, float]:
    processor._worker_pid = os.getpid()  # no worker thread: this benchmark drains by itself
    hot, processing = [], []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(size):
            submit()
        hot.append((time.perf_counter_ns() - start) / size / 1000)
        start = time.perf_counter_ns()
        processor.drain()
        processing.append((time.perf_counter_ns() - start) / size / 1000)
    return statistics.median(hot), statistics.median(processing)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, float] = {}

    processor, exporter = make(emit=True)
    hot, work = hot_and_processing(processor, lambda: processor.record(RECORD), args.batches, args.batch_size)
    results["record: hot path us (app thread)"] = round(hot, 2)
    results["record: processing us (worker: metrics + usage record)"] = round(work, 2)
    exporter.clear()
    processor.shutdown()

    metrics_only, _ = make(emit=False)
    hot, work = hot_and_processing(metrics_only, lambda: metrics_only.record(RECORD), args.batches, args.batch_size)
    results["record, no usage records: processing us (metrics only)"] = round(work, 2)
    metrics_only.shutdown()

    # A peer instrumentation's finished span, converted and priced on the worker.
    peer, peer_logs = make(emit=True)
    tracer = TracerProvider().get_tracer("opentelemetry.instrumentation.openai.v1")
    span = tracer.start_span("openai.chat", attributes={
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300, "gen_ai.usage.cache_read.input_tokens": 1024})
    span.end()
    hot, work = hot_and_processing(peer, lambda: peer.on_end(span), args.batches, args.batch_size)  # type: ignore[arg-type]
    results["on_end (peer span): hot path us"] = round(hot, 2)
    results["on_end (peer span): processing us (convert + price + record)"] = round(work, 2)
    peer_logs.clear()
    peer.shutdown()

    results["target_us"] = 20.0
    report(results, args.json, width=62)


if __name__ == "__main__":
    main()
