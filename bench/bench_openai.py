"""Benchmark: llmtally's overhead on the real ``openai`` SDK, per call and per stream chunk.

The SDK runs unmodified against canned responses served in-process by an ``httpx2.MockTransport`` (no
sockets, so network noise cannot dominate): a chat completion with usage (prompt 1200 / completion 30 /
cached 1024) and an SSE chat stream of N content chunks (one SSE event per read) plus a finish chunk, a
usage chunk and ``data: [DONE]``. Spans go through the same pipeline peers are measured with:
``TracerProvider`` + ``SimpleSpanProcessor`` + ``InMemorySpanExporter`` (cleared after every round). Every
instrumented round is checked: exactly one span per call, with the usage attributes and a cost status.

Both states are measured in the same process, in alternating rounds (A, B, A, B, ..., A: uninstrumented,
instrumented): ``OpenAIInstrumentor().instrument()`` / ``uninstrument()`` between rounds, so the baseline
is the real unpatched SDK; two untimed calls after each switch so neither state starts cold. Reported per
scenario: the median over rounds of the per-unit time in each state and overhead = their difference; also
"paired": the median (and IQR) of each instrumented round minus the mean of the uninstrumented rounds on
either side of it, which cancels drift in the machine's speed. For streams one timed unit is creating and
fully iterating a stream, and per-chunk overhead = overhead per stream / N (so the per-stream cost, span
start/end and pricing, is included, amortised over the N chunks).

The SDK itself spends ~1 ms per call and ~140 us per chunk (pydantic ``construct_type``) on a slow VM, so
2 us/chunk is ~1.5 % of a stream and easily lost in noise. A second, drift-free per-chunk measurement
opens a plain and a traced stream side by side and alternates ``next()`` on them, timing each; the order
alternates between pairs because the second stream in a step runs faster (caches warmed by the first).
It shares one cache state between both streams, so it reads somewhat lower than the per-stream figure.

The floor. Any instrumentation that puts llmtally's span on the call pays for the OpenTelemetry span itself
with the same attributes (the SDK cleans every attribute, builds the span and exports it). For non-stream
calls a third state measures that floor in the same interleaved run (A, B, C, A, B, C, ..., A): a bare wrapt
wrapper on the same method that starts a span with llmtally's start attributes (constants captured from a
real instrumented call), makes it current, calls the SDK, sets the remaining attributes and ends it: no
parsing, no pricing, no stream handling. Reported: the floor's overhead and llmtally's own share (overhead
minus floor), so the part llmtally's code can change is visible.

Run: python bench/bench_openai.py [--rounds 40] [--calls 40] [--stream-rounds 60] [--streams 1]
                                  [--chunks 1000] [--chunk-pairs 6] [--no-async] [--no-floor] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
import openai._base_client as openai_base
import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider, SpanKind

from llmtally import semconv as sc
from llmtally.instrumentation.openai import OpenAIInstrumentor

TARGET_CALL_US = 100.0
TARGET_CHUNK_US = 2.0

BASE_URL = "https://api.openai.com/v1"
MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
PROMPT, COMPLETION, CACHED = 1200, 30, 1024
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]
EXPECTED_USAGE = {
    sc.GEN_AI_USAGE_INPUT_TOKENS: PROMPT,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: COMPLETION,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: CACHED,
}


# --- canned wire responses (shapes of the real API, as in llmtally.testing.openai_wire) -------------

def _usage() -> dict[str, Any]:
    return {"prompt_tokens": PROMPT, "completion_tokens": COMPLETION, "total_tokens": PROMPT + COMPLETION,
            "prompt_tokens_details": {"cached_tokens": CACHED, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def completion_body() -> bytes:
    return _dumps({
        "id": "chatcmpl-bench000001", "object": "chat.completion", "created": 1_756_684_800, "model": RESPONSE_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! " * 15, "refusal": None,
                                             "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": _usage(), "service_tier": "default", "system_fingerprint": "fp_bench",
    })


def stream_frames(n_chunks: int, with_usage: bool) -> list[bytes]:
    """SSE frames of a chat stream: role chunk, ``n_chunks`` content chunks, finish chunk, usage chunk, DONE."""

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        body: dict[str, Any] = {"id": "chatcmpl-bench000002", "object": "chat.completion.chunk",
                                "created": 1_756_684_800, "model": RESPONSE_MODEL, "service_tier": "default",
                                "system_fingerprint": "fp_bench", "choices": choices}
        if with_usage:
            body["usage"] = usage
        return b"data: " + _dumps(body) + b"\n\n"

    frames = [chunk([{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                      "logprobs": None, "finish_reason": None}])]
    frames += [chunk([{"index": 0, "delta": {"content": f" tok{i % 100}"}, "logprobs": None, "finish_reason": None}])
               for i in range(n_chunks)]
    frames.append(chunk([{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    if with_usage:
        frames.append(chunk([], _usage()))
    frames.append(b"data: [DONE]\n\n")
    return frames


class _Frames(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """A response body delivered one SSE event per read, as tokens arrive from a real server."""

    def __init__(self, frames: list[bytes]) -> None:
        self._frames = frames

    def __iter__(self) -> Iterator[bytes]:
        yield from self._frames

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for frame in self._frames:
            yield frame


class CannedAPI:
    """The MockTransport handler: chat completions, JSON or SSE as the request asks."""

    def __init__(self, n_chunks: int) -> None:
        self.completion = completion_body()
        self.frames = {True: stream_frames(n_chunks, True), False: stream_frames(n_chunks, False)}
        self.requests = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return httpx2.Response(404, json={"error": {"message": "not found", "type": "not_found_error"}})
        body = json.loads(request.content)
        if body.get("stream") is True:
            with_usage = (body.get("stream_options") or {}).get("include_usage") is True
            return httpx2.Response(200, headers={"content-type": "text/event-stream"},
                                   stream=_Frames(self.frames[with_usage]))
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=self.completion)


# --- the calls under test --------------------------------------------------------------------------

def sync_call(client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]


def sync_stream(client: openai.OpenAI) -> int:
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,  # type: ignore[arg-type]
                                            stream_options={"include_usage": True})
    n = 0
    for _ in stream:
        n += 1
    return n


async def async_call(client: openai.AsyncOpenAI) -> None:
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]


async def async_stream(client: openai.AsyncOpenAI) -> int:
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES,  # type: ignore[arg-type]
                                                  stream=True, stream_options={"include_usage": True})
    n = 0
    async for _ in stream:
        n += 1
    return n


# --- harness ---------------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    unit: str  # "call" or "stream"
    batch: Callable[[int], None]  # runs k timed units
    settle: Callable[[int], None]  # untimed calls right after a state change (same client), so both states start warm
    size: int  # units per round
    rounds: int
    samples: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})  # us per unit
    floor: list[float] | None = None  # us per unit with the bare-span floor wrapper (call scenarios)


class Bench:
    def __init__(self, n_chunks: int, noop_tracer: bool = False, with_processor: bool = False) -> None:
        self.n_chunks = n_chunks
        self.api = CannedAPI(n_chunks)
        self.exporter = InMemorySpanExporter()
        self.noop_tracer = noop_tracer
        self.provider: Any = NoOpTracerProvider() if noop_tracer else TracerProvider()
        if not noop_tracer:
            self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.usage_processor = None
        if with_processor:  # metrics + usage records too; its worker thread runs during the timed rounds
            from opentelemetry.sdk._logs import LoggerProvider
            from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader

            from llmtally.processor import UsageSpanProcessor

            logger_provider = LoggerProvider()
            self.log_exporter = InMemoryLogRecordExporter()
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(self.log_exporter))
            self.usage_processor = UsageSpanProcessor(
                meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
                logger_provider=logger_provider,
                convert_foreign_spans=False)  # the floor's spans carry gen_ai usage: not llmtally's to price
            if not noop_tracer:
                self.provider.add_span_processor(self.usage_processor)
        self.instrumentor = OpenAIInstrumentor()
        self.loop = asyncio.new_event_loop()
        transport = httpx2.MockTransport(self.api)
        self.client = openai.OpenAI(base_url=BASE_URL, api_key="x", max_retries=0,
                                    http_client=httpx2.Client(transport=transport))
        self.aclient = openai.AsyncOpenAI(base_url=BASE_URL, api_key="x", max_retries=0,
                                          http_client=httpx2.AsyncClient(transport=transport))
        self.span_count = 0
        self.floor_on = False
        self.floor_name, self.floor_start, self.floor_end, self.floor_attribute_count = "", {}, {}, 0
        self.floor_keys: set[str] = set()

    # the floor: a bare span with llmtally's attributes, nothing else
    FLOOR_START_KEYS = (sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_STREAM,
                        sc.GEN_AI_REQUEST_MODEL, sc.SERVER_ADDRESS, sc.SERVER_PORT, sc.OPENAI_API_TYPE)

    def capture_floor(self) -> None:
        """The name and attributes of llmtally's span for a non-stream call, as constants for the floor."""
        self.set_instrumented(True)
        sync_call(self.client)
        self.set_instrumented(False)
        span = self.exporter.get_finished_spans()[-1]
        self.exporter.clear()
        attrs = dict(span.attributes or {})
        self.floor_name = span.name
        self.floor_start = {k: attrs[k] for k in self.FLOOR_START_KEYS if k in attrs}
        self.floor_end = {k: v for k, v in attrs.items() if k not in self.floor_start}
        self.floor_attribute_count = len(attrs)
        self.floor_keys = set(attrs)

    def _floor_start(self) -> tuple[Any, object]:
        span = self.floor_tracer.start_span(self.floor_name, kind=SpanKind.CLIENT, attributes=self.floor_start)
        return span, otel_context.attach(trace.set_span_in_context(span))

    def _floor_end(self, span: Any) -> None:
        span.set_attributes(self.floor_end)
        span.end()

    def _floor_sync(self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        span, token = self._floor_start()
        try:
            result = wrapped(*args, **kwargs)
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
        self._floor_end(span)
        return result

    async def _floor_async(self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> Any:
        span, token = self._floor_start()
        try:
            result = await wrapped(*args, **kwargs)
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
        self._floor_end(span)
        return result

    def set_floor(self, on: bool) -> None:
        if on:
            self.floor_tracer = self.provider.get_tracer("bench.floor")
            wrapt.wrap_function_wrapper(openai_base, "SyncAPIClient.request", self._floor_sync)
            wrapt.wrap_function_wrapper(openai_base, "AsyncAPIClient.request", self._floor_async)
        else:
            unwrap(openai_base.SyncAPIClient, "request")
            unwrap(openai_base.AsyncAPIClient, "request")
        self.floor_on = on

    def set_state(self, state: str) -> None:
        """'off' (the plain SDK), 'on' (llmtally) or 'floor' (the bare span)."""
        if self.floor_on and state != "floor":
            self.set_floor(False)
        self.set_instrumented(state == "on")
        if state == "floor" and not self.floor_on:
            self.set_floor(True)

    # state
    def set_instrumented(self, on: bool) -> None:
        if on:
            self.instrumentor.instrument(tracer_provider=self.provider)
        elif self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        for cls in (openai_base.SyncAPIClient, openai_base.AsyncAPIClient):
            wrapped = hasattr(cls.__dict__["request"], "__wrapped__")  # a wrapt FunctionWrapper
            assert wrapped is on, f"{cls.__name__}.request wrapped={wrapped}, expected {on}"

    def close(self) -> None:
        if self.floor_on:
            self.set_floor(False)
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        self.client.close()
        self.loop.run_until_complete(self.aclient.close())
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    # batches of timed units
    def sync_calls(self, k: int) -> None:
        for _ in range(k):
            sync_call(self.client)

    def sync_streams(self, k: int) -> None:
        for _ in range(k):
            got = sync_stream(self.client)
            assert got == self.n_chunks + 3, got  # role, N contents, finish, usage

    def _run_async(self, fn: Callable[[openai.AsyncOpenAI], Awaitable[Any]], k: int) -> list[Any]:
        async def many() -> list[Any]:
            return [await fn(self.aclient) for _ in range(k)]

        return self.loop.run_until_complete(many())

    def async_calls(self, k: int) -> None:
        self._run_async(async_call, k)

    def async_streams(self, k: int) -> None:
        for got in self._run_async(async_stream, k):
            assert got == self.n_chunks + 3, got

    # chunk-interleaved: one plain and one traced stream open at once, next() alternated and timed
    def _open_pair(self, create: Callable[[], Any]) -> tuple[Any, Any]:
        self.set_instrumented(False)
        plain = create()
        self.set_instrumented(True)
        traced = create()
        return plain, traced

    def sync_chunk_pair(self, traced_first: bool) -> list[tuple[int, int]]:
        """ns per chunk (plain, traced) for each chunk of one pair of streams."""
        plain, traced = self._open_pair(lambda: self.client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}))  # type: ignore
        assert type(traced).__name__ == "TracedStream" and type(plain) is openai.Stream, (plain, traced)
        its = [iter(plain), iter(traced)]  # what a for loop uses: the SDK's generator / the proxy itself
        order = (1, 0) if traced_first else (0, 1)
        clock = time.perf_counter_ns
        out: list[tuple[int, int]] = []
        gc.collect()
        while True:
            ns = [0, 0]
            try:
                for i in order:
                    start = clock()
                    next(its[i])
                    ns[i] = clock() - start
            except StopIteration:
                break
            out.append((ns[0], ns[1]))
        for it in its:  # the other one has one item (or the end) left
            for _ in it:
                pass
        return out

    def async_chunk_pair(self, traced_first: bool) -> list[tuple[int, int]]:
        async def pair() -> list[tuple[int, int]]:
            async def create() -> Any:
                return await self.aclient.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True})  # type: ignore

            self.set_instrumented(False)
            plain = await create()
            self.set_instrumented(True)
            traced = await create()
            assert type(traced).__name__ == "TracedAsyncStream" and type(plain) is openai.AsyncStream
            its = [plain.__aiter__(), traced.__aiter__()]  # what async for uses
            order = (1, 0) if traced_first else (0, 1)
            clock = time.perf_counter_ns
            out: list[tuple[int, int]] = []
            gc.collect()
            while True:
                ns = [0, 0]
                try:
                    for i in order:
                        start = clock()
                        await its[i].__anext__()
                        ns[i] = clock() - start
                except StopAsyncIteration:
                    break
                out.append((ns[0], ns[1]))
            for it in its:
                async for _ in it:
                    pass
            return out

        return self.loop.run_until_complete(pair())

    def clear(self) -> None:
        """Forget spans and usage records of untimed calls (warm-up, settle)."""
        self.exporter.clear()
        if self.usage_processor is not None:
            self.usage_processor.force_flush()
            self.log_exporter.clear()

    # sanity
    def check_floor_spans(self, expected: int) -> None:
        spans = self.exporter.get_finished_spans()
        self.exporter.clear()
        if self.noop_tracer:
            return
        assert len(spans) == expected, f"floor: {len(spans)} spans for {expected} calls"
        for span in spans:  # none dropped by span limits: the floor carries all of llmtally's attributes
            assert len(span.attributes or {}) == self.floor_attribute_count, span.attributes

    def check_spans(self, instrumented: bool, expected: int, streaming: bool) -> None:
        """Exactly one span per instrumented call with the usage attributes; for calls compared with the floor,
        the very attribute set the floor carries (like for like)."""
        spans = self.exporter.get_finished_spans()
        self.exporter.clear()
        if self.usage_processor is not None:
            self.usage_processor.force_flush()
            records = len(self.log_exporter.get_finished_logs())
            self.log_exporter.clear()
            assert records == (expected if instrumented else 0), f"{records} usage records for {expected} calls"
        if self.noop_tracer:  # llmtally's own work only: no span is recorded, nothing to check
            return
        if not instrumented:
            assert not spans, f"{len(spans)} spans while uninstrumented"
            return
        assert len(spans) == expected, f"expected exactly one span per call: {len(spans)} spans for {expected} calls"
        for span in spans:
            attrs = span.attributes or {}
            for key, value in EXPECTED_USAGE.items():
                assert attrs.get(key) == value, f"{span.name}: {key}={attrs.get(key)!r}, expected {value}"
            assert attrs.get(sc.GEN_AI_REQUEST_STREAM) is streaming, attrs.get(sc.GEN_AI_REQUEST_STREAM)
            assert attrs.get(sc.GEN_AI_RESPONSE_MODEL) == RESPONSE_MODEL, attrs.get(sc.GEN_AI_RESPONSE_MODEL)
            assert sc.LLMTALLY_COST_STATUS in attrs, "no cost status"
            if self.floor_keys and not streaming:
                assert set(attrs) == self.floor_keys, set(attrs) ^ self.floor_keys
        self.span_count += len(spans)


def timed(batch: Callable[[int], None], k: int) -> float:
    """Microseconds per unit for one batch of k units."""
    gc.collect()
    start = time.perf_counter_ns()
    batch(k)
    return (time.perf_counter_ns() - start) / k / 1000


SETTLE_CALLS = 2


def run(bench: Bench, scenarios: list[Scenario], warmup: int) -> None:
    for sc_ in scenarios:
        streaming = sc_.unit == "stream"
        # warm-up: every state, not recorded (imports, price catalog load, pydantic caches, ...)
        for state in ("off", "on", "floor") if sc_.floor is not None else ("off", "on"):
            bench.set_state(state)
            sc_.settle(warmup)
            sc_.batch(1)
            bench.clear()
        # The heap (SDK types, price catalog) is large: freeze it so the full collection before every round costs
        # ms, not ~50 ms, and no collection of that old heap lands inside a timed round.
        gc.collect()
        gc.freeze()
        # A, B, A, B, ..., B, A (or A, B, C, ... with the floor): the closing A lets every B (and C) be compared
        # with the A rounds on both sides.
        # With the floor, "on" and "floor" swap places every cycle: the second round after a switch runs warmer.
        states: list[str] = []
        for i in range(sc_.rounds):
            states += (["off", "floor", "on"] if i % 2 else ["off", "on", "floor"]) if sc_.floor is not None \
                else ["off", "on"]
        for state in [*states, "off"]:
            bench.set_state(state)
            sc_.settle(SETTLE_CALLS)
            bench.clear()
            sample = timed(sc_.batch, sc_.size)
            if state == "floor":
                assert sc_.floor is not None
                sc_.floor.append(sample)
                bench.check_floor_spans(sc_.size)
            else:
                sc_.samples[state == "on"].append(sample)
                bench.check_spans(state == "on", sc_.size, streaming)
    bench.set_state("off")


def run_chunk_pairs(bench: Bench, pair: Callable[[bool], list[tuple[int, int]]], pairs: int) -> dict[str, Any]:
    """Per-chunk overhead from streams iterated side by side: both see the same machine state."""
    pair(False)  # warm-up
    bench.clear()
    # The stream advanced second in a step runs measurably faster (~1 us here: caches warmed by the first), so
    # the order alternates between pairs and the two orders are weighted equally.
    diffs: dict[bool, list[int]] = {False: [], True: []}  # by "traced stream advanced first"
    plain_ns: list[int] = []
    for i in range(pairs):
        traced_first = i % 2 == 1
        got = pair(traced_first)
        bench.check_spans(True, 1, True)  # the traced stream only
        diffs[traced_first] += [t - p for p, t in got]
        plain_ns += [p for p, _ in got]
    bench.set_instrumented(False)
    by_order = {k: (statistics.median(v) / 1000, statistics.fmean(v) / 1000) for k, v in diffs.items() if v}
    mean = statistics.fmean(m for _, m in by_order.values())
    median = statistics.fmean(m for m, _ in by_order.values())
    return {
        "pairs": pairs,
        "chunks_timed": sum(len(v) for v in diffs.values()),
        "plain_chunk_median_us": round(statistics.median(plain_ns) / 1000, 2),
        "overhead_per_chunk_mean_us": round(mean, 3),
        "overhead_per_chunk_median_us": round(median, 3),
        "overhead_per_chunk_median_by_order_us": {("traced_first" if k else "plain_first"): round(m, 3)
                                                  for k, (m, _) in by_order.items()},
        "target_per_chunk_us": TARGET_CHUNK_US,
        "meets_target": mean <= TARGET_CHUNK_US,
    }


def summarize(sc_: Scenario, n_chunks: int) -> dict[str, Any]:
    base, inst = sc_.samples[False], sc_.samples[True]
    base_med, inst_med = statistics.median(base), statistics.median(inst)
    # each instrumented round minus the mean of the uninstrumented rounds just before and after it
    # (cancels drift of the machine's speed between rounds)
    paired = [b - (base[i] + base[i + 1]) / 2 for i, b in enumerate(inst)]
    q = statistics.quantiles(paired, n=4) if len(paired) >= 2 else [paired[0]] * 3
    out: dict[str, Any] = {
        "unit": sc_.unit,
        "units_per_round": sc_.size,
        "rounds": len(inst),
        "uninstrumented_us": round(base_med, 2),
        "instrumented_us": round(inst_med, 2),
        "overhead_us": round(inst_med - base_med, 2),
        "overhead_paired_median_us": round(statistics.median(paired), 2),
        "overhead_paired_iqr_us": [round(q[0], 2), round(q[2], 2)],
        "overhead_pct": round(100 * (inst_med - base_med) / base_med, 2),
    }
    if sc_.floor:
        floor_med = statistics.median(sc_.floor)
        floor_paired = [f - (base[i] + base[i + 1]) / 2 for i, f in enumerate(sc_.floor)]
        # each llmtally round minus the floor round of the same cycle (alternately before and after it)
        own_paired = [b - f for b, f in zip(inst, sc_.floor, strict=True)]
        out["floor_us"] = round(floor_med, 2)
        out["floor_overhead_us"] = round(floor_med - base_med, 2)
        out["floor_overhead_paired_median_us"] = round(statistics.median(floor_paired), 2)
        out["llmtally_own_us"] = round(inst_med - floor_med, 2)
        out["llmtally_own_paired_median_us"] = round(statistics.median(own_paired), 2)
    if sc_.unit == "stream":
        out["chunks"] = n_chunks
        out["overhead_per_chunk_us"] = round((inst_med - base_med) / n_chunks, 4)
        out["target_per_chunk_us"] = TARGET_CHUNK_US
        out["meets_target"] = out["overhead_per_chunk_us"] <= TARGET_CHUNK_US
    else:
        out["target_per_call_us"] = TARGET_CALL_US
        out["meets_target"] = out["overhead_us"] <= TARGET_CALL_US
    return out


def print_table(results: dict[str, Any]) -> None:
    meta = results["meta"]
    print(f"llmtally overhead on openai {meta['openai']} (httpx2 MockTransport, SimpleSpanProcessor + "
          f"InMemorySpanExporter); uninstrumented/instrumented rounds interleaved; medians, us per unit")
    head = (f"{'scenario':18} {'rounds':>8} {'uninstr':>10} {'instr':>10} {'overhead':>9} {'pct':>6} "
            f"{'paired [IQR]':>22} {'per chunk [paired IQR]':>23} {'target':>12} {'ok':>3}")
    print(head)
    print("-" * len(head))
    for name, r in results["scenarios"].items():
        lo, hi = r["overhead_paired_iqr_us"]
        paired = f"{r['overhead_paired_median_us']:.1f} [{lo:.1f}, {hi:.1f}]"
        if r["unit"] == "stream":
            n = r["chunks"]
            per_chunk = f"{r['overhead_per_chunk_us']:.2f} [{lo / n:.2f}, {hi / n:.2f}]"
            target = f"<={r['target_per_chunk_us']:g}/chunk"
        else:
            per_chunk, target = "-", f"<={r['target_per_call_us']:g}/call"
        rounds = f"{r['rounds']}x{r['units_per_round']}"
        print(f"{name:18} {rounds:>8} {r['uninstrumented_us']:10.1f} {r['instrumented_us']:10.1f} "
              f"{r['overhead_us']:9.1f} {r['overhead_pct']:5.1f}% {paired:>22} {per_chunk:>23} {target:>12} "
              f"{'yes' if r['meets_target'] else 'NO':>3}")
    floors = {name: r for name, r in results["scenarios"].items() if "floor_us" in r}
    if floors:
        print()
        print(f"the floor: a bare span with llmtally's {meta['floor_attributes']} attributes (no parsing, no pricing), "
              "measured in the same interleaved rounds")
        head = f"{'scenario':18} {'floor':>10} {'floor overhead':>15} {'paired':>8} {'llmtally own':>13} {'paired':>8}"
        print(head)
        print("-" * len(head))
        for name, r in floors.items():
            print(f"{name:18} {r['floor_us']:10.1f} {r['floor_overhead_us']:15.1f} "
                  f"{r['floor_overhead_paired_median_us']:8.1f} {r['llmtally_own_us']:13.1f} "
                  f"{r['llmtally_own_paired_median_us']:8.1f}")
    if results.get("chunk_interleaved"):
        print()
        print("per chunk, chunk-interleaved (a plain and a traced stream open at once, next() alternated and timed; "
              "excludes the per-stream start/finish cost)")
        head = (f"{'stream':18} {'pairs':>6} {'chunks':>7} {'plain chunk':>12} {'mean':>7} {'median':>7} "
                f"{'median plain/traced first':>26} {'target':>12} {'ok':>3}")
        print(head)
        print("-" * len(head))
        for name, r in results["chunk_interleaved"].items():
            orders = r["overhead_per_chunk_median_by_order_us"]
            by_order = " / ".join(f"{orders[k]:.2f}" if k in orders else "-" for k in ("plain_first", "traced_first"))
            target = f"<={r['target_per_chunk_us']:g}/chunk"
            print(f"{name:18} {r['pairs']:>6} {r['chunks_timed']:>7} {r['plain_chunk_median_us']:12.1f} "
                  f"{r['overhead_per_chunk_mean_us']:7.2f} {r['overhead_per_chunk_median_us']:7.2f} {by_order:>26} "
                  f"{target:>12} {'yes' if r['meets_target'] else 'NO':>3}")
    print(f"spans checked: {meta['spans_checked']} (exactly one per instrumented call, usage attributes present); "
          f"{meta['chunks']} content chunks per stream; total {meta['elapsed_s']} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=40, help="non-stream rounds per state (interleaved)")
    ap.add_argument("--calls", type=int, default=40, help="non-stream calls per round")
    ap.add_argument("--stream-rounds", type=int, default=60, help="stream rounds per state (interleaved)")
    ap.add_argument("--streams", type=int, default=1, help="streams per round")
    ap.add_argument("--chunks", type=int, default=1000, help="content chunks per stream")
    ap.add_argument("--chunk-pairs", type=int, default=6,
                    help="stream pairs for the chunk-interleaved per-chunk measurement (0: skip)")
    ap.add_argument("--warmup", type=int, default=20, help="warm-up calls per state (not recorded)")
    ap.add_argument("--no-async", action="store_true", help="skip the AsyncOpenAI scenarios")
    ap.add_argument("--no-floor", action="store_true", help="skip the bare-span floor rounds of the call scenarios")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--with-processor", action="store_true",
                    help="attach llmtally's UsageSpanProcessor (metrics + usage records) as well")
    ap.add_argument("--noop-tracer", action="store_true",
                    help="OpenTelemetry's no-op tracer: llmtally's own work without the SDK's span cost")
    args = ap.parse_args()

    t0 = time.perf_counter()
    bench = Bench(args.chunks, noop_tracer=args.noop_tracer, with_processor=args.with_processor)
    scenarios = [
        Scenario("sync chat", "call", bench.sync_calls, bench.sync_calls, args.calls, args.rounds),
        Scenario("sync chat stream", "stream", bench.sync_streams, bench.sync_calls, args.streams, args.stream_rounds),
    ]
    if not args.no_async:
        scenarios += [
            Scenario("async chat", "call", bench.async_calls, bench.async_calls, args.calls, args.rounds),
            Scenario("async chat stream", "stream", bench.async_streams, bench.async_calls, args.streams,
                     args.stream_rounds),
        ]
    if not args.no_floor and not args.noop_tracer:
        bench.capture_floor()
        for sc_ in scenarios:
            if sc_.unit == "call":
                sc_.floor = []
    chunk_pairs: dict[str, Any] = {}
    try:
        run(bench, scenarios, args.warmup)
        if args.chunk_pairs > 0:
            chunk_pairs["sync stream"] = run_chunk_pairs(bench, bench.sync_chunk_pair, args.chunk_pairs)
            if not args.no_async:
                chunk_pairs["async stream"] = run_chunk_pairs(bench, bench.async_chunk_pair, args.chunk_pairs)
    finally:
        bench.close()

    results: dict[str, Any] = {
        "meta": {"openai": openai.__version__, "httpx2": httpx2.__version__, "python": sys.version.split()[0],
                 "rounds": args.rounds, "calls_per_round": args.calls, "stream_rounds": args.stream_rounds,
                 "streams_per_round": args.streams, "chunk_pairs": args.chunk_pairs,
                 "chunks": args.chunks, "spans_checked": bench.span_count, "requests_served": bench.api.requests,
                 "floor_attributes": bench.floor_attribute_count,
                 "elapsed_s": round(time.perf_counter() - t0, 1)},
        "scenarios": {s.name: summarize(s, args.chunks) for s in scenarios},
        "chunk_interleaved": chunk_pairs,
    }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_table(results)


if __name__ == "__main__":
    main()
