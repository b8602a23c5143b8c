"""Benchmark: llmtally's per-call overhead on the real ``anthropic`` SDK (issue 6: one non-OpenAI SDK).

Same method as bench_openai.py: canned responses through an in-process ``httpx2.MockTransport`` (no
sockets), the span pipeline peers are measured with (``SimpleSpanProcessor`` into an
``InMemorySpanExporter``), and uninstrumented / instrumented rounds interleaved in one run (A, B, A, ...),
each instrumented round compared with the mean of the uninstrumented rounds on either side. The SDK's own
tracing is switched off (``ANTHROPIC_OPEN_TELEMETRY=false``) so both sides measure the same SDK work.

Run: python bench/bench_anthropic.py [--rounds 30] [--calls 40] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time

os.environ["ANTHROPIC_OPEN_TELEMETRY"] = "false"  # before the client exists: it is read at construction

import anthropic
import httpx2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from _report import report  # type: ignore[import-not-found]
from llmtally.instrumentation.anthropic import AnthropicInstrumentor

BODY = json.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
    "content": [{"type": "text", "text": "Hi there! How can I help?"}], "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 100,
              "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 60},
              "output_tokens": 30},
}).encode()
TARGET_US = 100.0
SETTLE_CALLS = 2


def handler(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, content=BODY, headers={"content-type": "application/json"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = AnthropicInstrumentor()
    client = anthropic.Anthropic(base_url="https://api.anthropic.com", api_key="x", max_retries=0,
                                 http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    messages = [{"role": "user", "content": "Hello!"}]

    def batch() -> float:
        gc.collect()
        start = time.perf_counter_ns()
        for _ in range(args.calls):
            client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=messages)
        return (time.perf_counter_ns() - start) / args.calls / 1000

    def settle() -> None:  # untimed calls right after a switch, so neither state starts cold
        for _ in range(SETTLE_CALLS):
            client.messages.create(model="claude-haiku-4-5", max_tokens=64, messages=messages)

    for on in (False, True):  # warm-up both states
        if on:
            instrumentor.instrument(tracer_provider=provider)
        batch()
        if on:
            instrumentor.uninstrument()
    # As in bench_openai: freeze the large old heap so no full collection of it lands in a timed round.
    gc.collect()
    gc.freeze()
    samples: dict[bool, list[float]] = {False: [], True: []}
    for on in [False, True] * args.rounds + [False]:
        if on:
            instrumentor.instrument(tracer_provider=provider)
        settle()
        exporter.clear()
        samples[on].append(batch())
        spans = exporter.get_finished_spans()
        if on:
            instrumentor.uninstrument()
            assert len(spans) == args.calls, f"{len(spans)} spans for {args.calls} calls"
            assert all((s.attributes or {}).get("gen_ai.usage.input_tokens") == 1200 for s in spans)
        else:
            assert not spans
    plain, traced = samples[False], samples[True]
    paired = [t - (plain[i] + plain[i + 1]) / 2 for i, t in enumerate(traced)]
    report({
        "uninstrumented_us_per_call": round(statistics.median(plain), 1),
        "instrumented_us_per_call": round(statistics.median(traced), 1),
        "overhead_us_per_call (paired median)": round(statistics.median(paired), 1),
        "target_us": TARGET_US,
    }, args.json, width=40)


if __name__ == "__main__":
    main()
