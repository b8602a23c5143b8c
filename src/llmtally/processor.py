"""The usage processor: every LLM call becomes metrics and one usage log record.

Two inputs, one output path:

* **llmtally's own calls** arrive as :class:`~llmtally.instrumentation.call.CallRecord` straight from
  the instrumentor (a listener), *whether or not the trace was sampled*. That is how metrics and
  usage records stay exact under ``ParentBased(TraceIdRatioBased(0.01))``: sampling decides which
  spans are exported, never what is counted.
* **Spans of other GenAI instrumentations** (OpenLLMetry, openai-v2, OpenLIT, ...) arrive through
  ``on_end`` when they carry ``gen_ai.usage.*`` tokens, and are priced with the same engine. A peer
  span that is the parent or a child of an llmtally span is the same call and is skipped, so two
  instrumentations on one call count once. (Unsampled peer spans never reach a span processor: only
  llmtally's own calls are exact under sampling.)

Metric attributes are the low-cardinality defaults (operation, provider, request and response model,
``server.address``, ``error.type``) plus only the attribution keys allow-listed in
``LLMTALLY_METRIC_ATTRIBUTES`` (comma-separated), each capped at ``LLMTALLY_METRIC_ATTRIBUTE_LIMIT``
distinct values (default 100); values past the cap are reported as ``other``.

Off the app's thread: ``record()`` and ``on_end()`` only append to a queue (tens of nanoseconds). A
worker thread turns queued calls into measurements and usage records; every metric collection,
``force_flush()``, ``shutdown()`` and interpreter exit first drain the queue under the same lock, so
what is exported is always complete. The OpenTelemetry SDK costs ~10 µs per synchronous measurement,
so only the semconv histograms (token usage, duration, time to first chunk, cost) are SDK instruments;
the per-kind token and call counters (and the prompt-cache savings in USD) are summed here and exported
as observable counters. Histogram measurements carry the call's own span as context, so a sampled call's
trace and span ids become exemplars (``OTEL_METRICS_EXEMPLAR_FILTER=always_off`` turns them off).
"""

from __future__ import annotations

import atexit
import collections
import os
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import Logger, LoggerProvider, get_logger
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally._version import __version__
from llmtally.instrumentation._guard import (
    internal_error_counts,
    malformed_payload_counts,
    report_internal_error,
)
from llmtally.instrumentation.call import (
    CallRecord,
    add_listener,
    cost_attributes,
    covered_spans,
    default_price_book,
    format_decimal,
    remove_listener,
)
from llmtally.pricing import PriceBook
from llmtally.pricing.spans import nonempty_text, price_span_attributes
from llmtally.pricing.spans import usage_from_span_attributes as usage_from_span_attributes  # public here too

_BASE_KEYS = (sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_MODEL, sc.GEN_AI_RESPONSE_MODEL,
              sc.SERVER_ADDRESS, sc.ERROR_TYPE)
_LEAF_ATTRS = tuple((leaf, {sc.LLMTALLY_TOKEN_KIND: leaf}) for leaf in sc.TOKEN_LEAVES)
_ATTR_CACHE_LIMIT = 10_000
_ZERO = Decimal(0)


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


class _AttrSets:
    """The attribute dicts one combination of labels needs, built once and reused (hot path)."""

    __slots__ = ("base", "input", "leaves", "output")

    def __init__(self, base: dict[str, AttributeValue]) -> None:
        self.base = base
        self.input = {**base, sc.GEN_AI_TOKEN_TYPE: sc.TokenType.INPUT}
        self.output = {**base, sc.GEN_AI_TOKEN_TYPE: sc.TokenType.OUTPUT}
        self.leaves = {leaf: {**base, **extra} for leaf, extra in _LEAF_ATTRS}


class UsageSpanProcessor(SpanProcessor):
    """Records metrics and usage log records for every LLM call (see the module docstring)."""

    def __init__(self, *, meter_provider: MeterProvider | None = None, logger_provider: LoggerProvider | None = None,
                 metric_attributes: Sequence[str] | None = None, metric_attribute_limit: int | None = None,
                 convert_foreign_spans: bool = True, price_book: PriceBook | None = None,
                 emit_usage_records: bool = True) -> None:
        self._allow = tuple(metric_attributes if metric_attributes is not None
                            else _env_list(sc.ENV_METRIC_ATTRIBUTES))
        self._limit = metric_attribute_limit if metric_attribute_limit is not None else int(
            os.environ.get(sc.ENV_METRIC_ATTRIBUTE_LIMIT, "100"))
        self._seen: dict[str, set[str]] = {key: set() for key in self._allow}
        self._convert = convert_foreign_spans
        if convert_foreign_spans:
            covered_spans.enabled = True  # instrumentors now note which spans they cover
        self._active = True
        self._price_book = price_book
        self._attr_cache: dict[tuple[Any, ...], _AttrSets] = {}
        self._lock = threading.RLock()
        self._queue: collections.deque[CallRecord | ReadableSpan] = collections.deque()
        self._worker_pid = 0
        self._stop = threading.Event()
        # Summed here, exported by observable counters (cheaper than ~10 µs per SDK measurement).
        self._token_sums: dict[tuple[Any, str], int] = {}
        self._unpriced_counts: dict[tuple[Any, ...], int] = {}
        self._estimated_counts: dict[tuple[Any, ...], int] = {}
        self._savings: dict[tuple[Any, ...], Decimal] = {}  # exact; exported as a float sum
        meter = metrics.get_meter("llmtally", __version__, meter_provider)
        self._token_usage = meter.create_histogram(
            sc.METRIC_TOKEN_USAGE, unit=sc.UNIT_TOKEN, description="Input and output tokens per LLM call",
            explicit_bucket_boundaries_advisory=list(sc.TOKEN_USAGE_BUCKETS))
        self._duration = meter.create_histogram(
            sc.METRIC_OPERATION_DURATION, unit=sc.UNIT_SECONDS, description="Duration of LLM calls",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS))
        self._ttfc = meter.create_histogram(
            sc.METRIC_TIME_TO_FIRST_CHUNK, unit=sc.UNIT_SECONDS, description="Time to the first streamed chunk",
            explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS))
        self._cost = meter.create_histogram(
            sc.METRIC_OPERATION_COST, unit=sc.UNIT_USD, description="Cost of priced LLM calls (its sum is spend)",
            explicit_bucket_boundaries_advisory=list(sc.COST_BUCKETS))
        meter.create_observable_counter(
            sc.METRIC_TOKENS_BY_KIND, [self._observe_tokens], unit=sc.UNIT_TOKEN,
            description="Tokens by disjoint kind (uncached input, cache read, cache write, output, reasoning)")
        meter.create_observable_counter(sc.METRIC_UNPRICED_CALLS, [self._observe_unpriced], unit=sc.UNIT_CALL,
                                        description="LLM calls whose model has no known price")
        meter.create_observable_counter(sc.METRIC_ESTIMATED_CALLS, [self._observe_estimated], unit=sc.UNIT_CALL,
                                        description="LLM calls whose token counts are estimated")
        meter.create_observable_counter(sc.METRIC_INTERNAL_ERRORS, [self._observe_errors], unit=sc.UNIT_ERROR,
                                        description="Failures inside llmtally, swallowed (the app was unaffected)")
        meter.create_observable_counter(sc.METRIC_MALFORMED_PAYLOADS, [self._observe_malformed], unit=sc.UNIT_CALL,
                                        description="Provider usage payloads llmtally had to correct")
        meter.create_observable_counter(sc.METRIC_CACHE_SAVINGS, [self._observe_savings], unit=sc.UNIT_USD,
                                        description="What prompt-cache reads saved against the uncached input price")
        self._logger: Logger | None = (get_logger("llmtally", __version__, logger_provider=logger_provider)
                                       if emit_usage_records else None)
        add_listener(self.record)
        ref = weakref.ref(self)
        atexit.register(_drain_at_exit, ref)  # before the SDK providers' own exit hooks (registered earlier)

    # --- queue and worker -------------------------------------------------------------------------
    def _submit(self, item: CallRecord | ReadableSpan) -> None:
        self._queue.append(item)
        if self._worker_pid != os.getpid():  # first use, or a forked child: (re)start the worker
            self._start_worker()
        elif len(self._queue) > 100_000:  # the worker cannot keep up: apply back-pressure, lose nothing
            self.drain()

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker_pid == os.getpid():
                return
            self._worker_pid = os.getpid()
            self._stop = threading.Event()
            thread = threading.Thread(target=_worker, args=(weakref.ref(self), self._stop),
                                      name="llmtally-usage", daemon=True)
            thread.start()

    def drain(self) -> None:
        """Process everything queued, now, on this thread. Never raises."""
        queue = self._queue
        with self._lock:
            while queue:
                item = queue.popleft()
                try:
                    if isinstance(item, CallRecord):
                        self._process(item)
                    else:
                        converted = self._convert_span(item, item.attributes or {})
                        if converted is not None:
                            self._process(converted)
                except Exception as exc:
                    report_internal_error("processor.process", exc)

    # --- SpanProcessor ----------------------------------------------------------------------------
    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if not (self._convert and self._active):
            return
        try:
            scope = span.instrumentation_scope
            if scope is not None and scope.name.startswith("llmtally"):
                return  # counted through its CallRecord, sampled or not
            attrs = span.attributes or {}
            if all(key not in attrs for key in sc.SPAN_USAGE_KEYS):
                return
            ctx = span.get_span_context()
            parent = span.parent
            if (ctx is not None and ctx.span_id in covered_spans) or (parent is not None
                                                                      and parent.span_id in covered_spans):
                return  # the same call as an llmtally span: counted once, there
            self._submit(span)  # converted and priced on the worker
        except Exception as exc:
            report_internal_error("processor.on_end", exc)

    def shutdown(self) -> None:
        self._active = False
        remove_listener(self.record)
        self.drain()
        self._stop.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.drain()
        return True

    # --- one call -------------------------------------------------------------------------------
    def record(self, record: CallRecord) -> None:
        """Queue one call's metrics and usage record (the listener llmtally's instrumentors call)."""
        self._submit(record)

    def _process(self, record: CallRecord) -> None:
        exemplar = record.sampled and bool(record.trace_id)
        # Built once: the exemplar context of the metrics and the usage record's trace and span ids.
        ctx = _call_context(record) if exemplar or self._logger is not None else None
        try:
            self._record_metrics(record, ctx if exemplar else None)
        except Exception as exc:
            report_internal_error("processor.metrics", exc)
        if self._logger is not None and ctx is not None:  # ctx is always made when there is a logger
            try:
                self._emit_usage_record(record, ctx)
            except Exception as exc:
                report_internal_error("processor.usage_record", exc)

    def _record_metrics(self, r: CallRecord, ctx: Context | None) -> None:
        """``ctx``: the call's own span as the measurement context, for sampled calls. The SDK's default
        (trace-based) exemplar filter then attaches its trace and span ids as exemplars to the histogram
        points, which OTLP carries (this worker thread has no context of its own)."""
        key, sets = self._attr_sets(r)
        usage = r.usage
        self._token_usage.record(usage.input_tokens, sets.input, ctx)
        self._token_usage.record(usage.output_tokens, sets.output, ctx)
        self._duration.record(r.duration_s, sets.base, ctx)
        if r.time_to_first_chunk_s is not None:
            self._ttfc.record(r.time_to_first_chunk_s, sets.base, ctx)
        sums = self._token_sums
        for leaf, count in usage.leaves().items():
            if count:
                sums[(key, leaf)] = sums.get((key, leaf), 0) + count
        cost = r.cost
        if cost.amount is not None:
            self._cost.record(float(cost.amount), sets.base, ctx)
            if cost.cache_savings:
                self._savings[key] = self._savings.get(key, _ZERO) + cost.cache_savings
        else:
            self._unpriced_counts[key] = self._unpriced_counts.get(key, 0) + 1
        if usage.estimated:
            self._estimated_counts[key] = self._estimated_counts.get(key, 0) + 1

    def _attr_sets(self, r: CallRecord) -> tuple[tuple[Any, ...], _AttrSets]:
        extras = tuple(self._label(key, r.attributes.get(key)) for key in self._allow)
        key = (r.operation, r.provider, r.request_model, r.response_model, r.server_address, r.error_type, extras)
        sets = self._attr_cache.get(key)
        if sets is None:
            base: dict[str, AttributeValue] = {}
            for name, value in zip(_BASE_KEYS, key[:6], strict=True):
                if value is not None:
                    base[name] = value
            for name, value in zip(self._allow, extras, strict=True):
                if value is not None:
                    base[name] = value
            sets = _AttrSets(base)
            if len(self._attr_cache) >= _ATTR_CACHE_LIMIT:
                self._attr_cache.clear()
            self._attr_cache[key] = sets
        return key, sets

    def _label(self, key: str, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value)
        seen = self._seen[key]
        if text in seen:
            return text
        with self._lock:
            if len(seen) < self._limit:
                seen.add(text)
                return text
        return sc.OVERFLOW_VALUE

    def _emit_usage_record(self, r: CallRecord, ctx: Context) -> None:
        assert self._logger is not None
        attrs = usage_record_attributes(r)
        self._logger.emit(timestamp=r.end_time_ns, observed_timestamp=r.end_time_ns, context=ctx,
                          event_name=sc.USAGE_EVENT_NAME, body=usage_record_summary(r), attributes=attrs)

    # --- observable counters (each collection drains the queue first: exports are complete) -------
    def _observe_tokens(self, options: CallbackOptions) -> Iterable[Observation]:
        self.drain()
        with self._lock:
            return [Observation(count, self._sets_for(key).leaves[leaf])
                    for (key, leaf), count in self._token_sums.items()]

    def _observe_unpriced(self, options: CallbackOptions) -> Iterable[Observation]:
        self.drain()
        with self._lock:
            return [Observation(n, self._sets_for(key).base) for key, n in self._unpriced_counts.items()]

    def _observe_estimated(self, options: CallbackOptions) -> Iterable[Observation]:
        self.drain()
        with self._lock:
            return [Observation(n, self._sets_for(key).base) for key, n in self._estimated_counts.items()]

    def _observe_savings(self, options: CallbackOptions) -> Iterable[Observation]:
        self.drain()
        with self._lock:
            return [Observation(float(usd), self._sets_for(key).base) for key, usd in self._savings.items()]

    def _observe_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        self.drain()
        return [Observation(count, {sc.LLMTALLY_ERROR_KIND: kind}) for kind, count in internal_error_counts().items()]

    @staticmethod
    def _observe_malformed(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(count, {sc.GEN_AI_PROVIDER_NAME: provider})
                for provider, count in malformed_payload_counts().items()]

    def _sets_for(self, key: tuple[Any, ...]) -> _AttrSets:
        sets = self._attr_cache.get(key)
        if sets is None:  # evicted from the cache: rebuild from the key alone
            base = {n: v for n, v in zip(_BASE_KEYS, key[:6], strict=True) if v is not None}
            base.update({n: v for n, v in zip(self._allow, key[6], strict=True) if v is not None})
            sets = _AttrSets(base)
        return sets

    # --- peers' spans -----------------------------------------------------------------------------
    def _convert_span(self, span: ReadableSpan, attrs: Mapping[str, Any]) -> CallRecord | None:
        operation = (nonempty_text(attrs.get(sc.GEN_AI_OPERATION_NAME))
                     or nonempty_text(attrs.get("llm.request.type")) or "chat")
        start, end = span.start_time or 0, span.end_time or 0
        # Read and priced as the collector plugin prices the same span (service tier included).
        priced = price_span_attributes(attrs, start, self._price_book or default_price_book())
        error_type = None
        if span.status.status_code is StatusCode.ERROR:
            error_type = nonempty_text(attrs.get(sc.ERROR_TYPE)) or "error"
        ctx = span.get_span_context()
        scope = span.instrumentation_scope
        ttfc = attrs.get(sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        keep = {k: v for k, v in attrs.items() if k.startswith(("gen_ai.", "llmtally.", "user.", "session."))}
        keep[sc.LLMTALLY_SOURCE] = scope.name if scope is not None else "unknown"
        return CallRecord(
            provider=priced.provider or "unknown", operation=operation, request_model=priced.request_model,
            response_model=priced.response_model, response_id=nonempty_text(attrs.get(sc.GEN_AI_RESPONSE_ID)),
            server_address=nonempty_text(attrs.get(sc.SERVER_ADDRESS)), server_port=None, usage=priced.usage,
            cost=priced.cost, streaming=bool(attrs.get(sc.GEN_AI_REQUEST_STREAM, False)),
            start_time_ns=start, end_time_ns=end, duration_s=max(end - start, 0) / 1e9,
            time_to_first_chunk_s=float(ttfc) if isinstance(ttfc, (int, float)) else None,
            error_type=error_type, error_message=span.status.description if error_type else None,
            trace_id=ctx.trace_id if ctx else 0, span_id=ctx.span_id if ctx else 0, sampled=True, attributes=keep,
        )


def _worker(ref: weakref.ref[UsageSpanProcessor], stop: threading.Event) -> None:
    """Drain the processor's queue every 50 ms until it is shut down or garbage collected."""
    while not stop.wait(0.05):
        processor = ref()
        if processor is None:
            return
        processor.drain()
        del processor


def _drain_at_exit(ref: weakref.ref[UsageSpanProcessor]) -> None:
    processor = ref()
    if processor is not None:
        processor.drain()


def _call_context(r: CallRecord) -> Context:
    """A context whose current span is the call's own (for exemplars and the usage record's ids)."""
    span_context = SpanContext(r.trace_id, r.span_id, is_remote=False,
                               trace_flags=TraceFlags(TraceFlags.SAMPLED if r.sampled else 0))
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def usage_record_attributes(r: CallRecord) -> dict[str, AttributeValue]:
    """Every field of the hand-made usage tables, as log record attributes."""
    u = r.usage
    attrs: dict[str, AttributeValue] = {
        k: v for k, v in r.attributes.items()
        if k.startswith(("llmtally.", "user.", "session.")) or k == sc.GEN_AI_CONVERSATION_ID
    }
    attrs.update({
        sc.LLMTALLY_RECORD_ID: f"{r.trace_id:032x}-{r.span_id:016x}",
        sc.LLMTALLY_TRACE_ID: f"{r.trace_id:032x}",
        sc.LLMTALLY_SPAN_ID: f"{r.span_id:016x}",
        sc.GEN_AI_OPERATION_NAME: r.operation,
        sc.GEN_AI_PROVIDER_NAME: r.provider,
        sc.GEN_AI_USAGE_INPUT_TOKENS: u.input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: u.output_tokens,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: u.cache_read_tokens,
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: u.cache_write_tokens,
        sc.LLMTALLY_CACHE_WRITE_1H_TOKENS: u.cache_write_1h_tokens,
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: u.reasoning_tokens,
        sc.LLMTALLY_USAGE_ESTIMATED: u.estimated,
        sc.LLMTALLY_USAGE_CLAMPED: u.clamped,
        sc.GEN_AI_REQUEST_STREAM: r.streaming,
        sc.LLMTALLY_DURATION: r.duration_s,
    })
    for key, value in ((sc.GEN_AI_REQUEST_MODEL, r.request_model), (sc.GEN_AI_RESPONSE_MODEL, r.response_model),
                       (sc.GEN_AI_RESPONSE_ID, r.response_id), (sc.SERVER_ADDRESS, r.server_address),
                       (sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, r.time_to_first_chunk_s),
                       (sc.ERROR_TYPE, r.error_type), (sc.LLMTALLY_ERROR_MESSAGE, r.error_message)):
        if value is not None:
            attrs[key] = value
    attrs.update(cost_attributes(r.cost))
    if r.cost.cache_savings:
        attrs[sc.LLMTALLY_COST_CACHE_SAVINGS] = format_decimal(r.cost.cache_savings)
    return attrs


def usage_record_summary(r: CallRecord) -> str:
    cost = f"${format_decimal(r.cost.amount)}" if r.cost.amount is not None else "unpriced"
    flag = " (estimated)" if r.usage.estimated else ""
    model = r.response_model or r.request_model or "?"
    return (f"{r.provider} {r.operation} {model}: {r.usage.input_tokens} in / {r.usage.output_tokens} out "
            f"tokens{flag}, {cost}")
