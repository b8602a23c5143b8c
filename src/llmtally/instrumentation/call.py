"""One LLM call: its span, its usage and cost, finished exactly once.

Every instrumentor creates a :class:`Call` when the SDK call starts and calls :meth:`Call.finish` once
the outcome is known (a response, an exhausted/closed/abandoned stream, an error). ``finish`` is
idempotent, computes the cost, sets the span's usage and cost attributes, ends the span, and hands a
:class:`CallRecord` to the registered listeners (the usage processor), also for unsampled spans.

Nesting: when an llmtally call starts inside another (LiteLLM on top of OpenAI, the httpx fallback under
an SDK), the outer one is marked *delegated* and carries no usage: only the innermost span counts.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.context import current_attributes
from llmtally.estimate import tokens_from_chars
from llmtally.instrumentation._guard import report_internal_error, report_malformed_payload
from llmtally.pricing import Cost, PriceBook
from llmtally.usage import Usage


@dataclass(slots=True)
class CallRecord:
    """What one finished call produced; consumed by the usage processor, also when unsampled."""

    provider: str
    operation: str
    request_model: str | None
    response_model: str | None
    response_id: str | None
    server_address: str | None
    server_port: int | None
    usage: Usage
    cost: Cost
    streaming: bool
    start_time_ns: int
    end_time_ns: int
    duration_s: float
    time_to_first_chunk_s: float | None
    error_type: str | None
    error_message: str | None
    trace_id: int
    span_id: int
    sampled: bool
    attributes: Mapping[str, AttributeValue]


Listener = Callable[[CallRecord], None]
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


class _CoveredSpans:
    """Span ids of llmtally calls and of the spans they started under: a peer instrumentation's span
    that is the parent or a child of an llmtally span is the same call (see the usage processor).

    Kept only while a processor converts peers' spans (``enabled``): from a call's start until 60 s
    after it ends, when any peer span of the same call has ended too."""

    def __init__(self, linger_s: float = 60.0) -> None:
        self.enabled = False
        self._linger = linger_s
        self._ids: dict[int, float] = {}  # span id -> expiry (monotonic); inf while the call runs
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def add(self, *span_ids: int) -> None:
        with self._lock:
            for span_id in span_ids:
                if span_id:
                    self._ids[span_id] = float("inf")

    def release(self, *span_ids: int) -> None:
        now = time.monotonic()
        expiry = now + self._linger
        with self._lock:
            for span_id in span_ids:
                if span_id in self._ids:
                    self._ids[span_id] = expiry
            if now >= self._next_sweep:  # amortised clean-up, at most every few seconds
                self._next_sweep = now + 5.0
                for old in [k for k, v in self._ids.items() if v < now]:
                    del self._ids[old]

    def __contains__(self, span_id: int) -> bool:
        return span_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


covered_spans = _CoveredSpans()

_ACTIVE: contextvars.ContextVar[Call | None] = contextvars.ContextVar("llmtally_active_call", default=None)

_default_book: PriceBook | None = None


def default_price_book() -> PriceBook:
    """The process-wide price book: bundled catalog plus ``LLMTALLY_PRICE_FILES`` (loaded once)."""
    global _default_book
    if _default_book is None:
        _default_book = PriceBook.from_env()
    return _default_book


def set_default_price_book(book: PriceBook | None) -> None:
    global _default_book
    _default_book = book


class Settings:
    """What an instrumentor's ``instrument(**kwargs)`` configured: its tracer and price book."""

    tracer: trace.Tracer
    price_book: PriceBook | None = None
    wrapped: list[tuple[Any, str]]

    def __init__(self) -> None:
        self.wrapped = []

    def wrap(self, target: Any, name: str, wrapper: Callable[..., Any], kind: str) -> None:
        """Wrap ``target.name`` (a class or module), remembered for :meth:`unwrap_all`. A failure (an SDK
        layout we do not know) is counted under ``kind``, and that method is left alone."""
        try:
            wrapt.wrap_function_wrapper(target, name, wrapper)
        except Exception as exc:
            report_internal_error(kind, exc)
            return
        self.wrapped.append((target, name))

    def unwrap_all(self) -> None:
        while self.wrapped:
            target, name = self.wrapped.pop()
            unwrap(target, name)

    def configure(self, scope: str, kwargs: Mapping[str, Any]) -> None:
        from llmtally._version import __version__

        self.tracer = trace.get_tracer(scope, __version__, kwargs.get("tracer_provider"),
                                       schema_url=f"https://opentelemetry.io/schemas/{sc.SEMCONV_VERSION}")
        self.price_book = kwargs.get("price_book")


def _raw_env_reader(name: str) -> Callable[[], object]:
    """A fast per-call reader of one environment variable's raw value. ``os.environ.get`` runs four
    Python-level calls (~3 us inside an SDK call); the dict behind ``os.environ`` answers in one lookup
    and is what ``os.environ[...] = ...`` / ``monkeypatch.setenv`` update, so changes still apply at once."""
    try:
        data: dict[Any, Any] = os.environ._data  # type: ignore[attr-defined]
        key = os.environ.encodekey(name)
        if isinstance(data, dict):
            return partial(data.get, key)
    except Exception:  # pragma: no cover - a platform without CPython's os._Environ layout
        pass
    return partial(os.environ.get, name)


_capture_raw = _raw_env_reader(sc.ENV_CAPTURE_MESSAGE_CONTENT)
_capture_parsed: tuple[object, bool] = (None, False)


def capture_content_enabled() -> bool:
    """Whether prompts and completions may be recorded (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``)."""
    global _capture_parsed
    raw = _capture_raw()
    if raw is _capture_parsed[0] or raw == _capture_parsed[0]:
        return _capture_parsed[1]
    value = raw.decode() if isinstance(raw, bytes) else str(raw or "")
    _capture_parsed = (raw, value.strip().lower() in ("1", "true", "yes", "on"))
    return _capture_parsed[1]


# Failures after the request reached the provider (a read timeout, a dropped connection, a cancelled
# wait): the model may have run and billed the prompt, so such a call is estimated, not an exact zero.
# Matched by class name along the exception chain, because every SDK wraps its HTTP stack's errors.
_MAYBE_BILLED = frozenset({"ReadTimeout", "ReadError", "RemoteProtocolError", "CancelledError", "IncompleteRead",
                           "ReadTimeoutError", "ProtocolError", "ResponseStreamingError"})


def maybe_billed(error: BaseException) -> bool:
    """Whether a failed call may still have been billed. An HTTP error status means the provider refused
    the request (not billed); a 2xx status the SDK then failed to parse was served (may be billed); a
    connect failure never reached it; a failure while waiting for or reading the response may have been
    billed."""
    seen: BaseException | None = error
    for _ in range(6):  # the chain is short; a cycle or a deep chain must not loop
        if seen is None:
            return False
        status = getattr(seen, "status_code", None)
        if isinstance(status, int) and not isinstance(status, bool):
            return 200 <= status < 300
        if any(cls.__name__ in _MAYBE_BILLED for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Call:
    """The span and the accounting of one LLM call."""

    __slots__ = ("_covered", "_done", "_start_ns", "_t0", "_token", "capture", "delegated", "estimate_input",
                 "finish_reasons", "operation", "out_ascii", "out_non_ascii", "output_parts", "price_book",
                 "provider", "request_model", "response_attributes", "response_id", "response_model", "server_address",
                 "server_port",
                 "service_tier", "span", "start_attributes", "streaming", "ttfc")

    def __init__(self, tracer: trace.Tracer, *, provider: str, operation: str, request_model: str | None,
                 server_address: str | None, server_port: int | None, streaming: bool,
                 attributes: Mapping[str, AttributeValue] | None = None, price_book: PriceBook | None = None,
                 estimate_input: Callable[[], int] | None = None, capture: bool | None = None) -> None:
        self.provider = provider
        self.operation = operation
        self.request_model = request_model
        self.server_address = server_address
        self.server_port = server_port
        self.streaming = streaming
        self.price_book = price_book
        self.estimate_input = estimate_input
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.finish_reasons: Sequence[str] | None = None
        self.service_tier: str | None = None
        self.response_attributes: dict[str, AttributeValue] = {}
        self.ttfc: float | None = None
        self.out_ascii = 0
        self.out_non_ascii = 0
        self.capture = capture_content_enabled() if capture is None else capture
        self.output_parts: list[str] | None = [] if self.capture else None
        self.delegated = False
        self._done = False
        self._token: contextvars.Token[Call | None] | None = None
        attrs: dict[str, AttributeValue] = {
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_PROVIDER_NAME: provider,
            sc.GEN_AI_REQUEST_STREAM: streaming,
        }
        if request_model:
            attrs[sc.GEN_AI_REQUEST_MODEL] = request_model
        if server_address:
            attrs[sc.SERVER_ADDRESS] = server_address
        if server_port:
            attrs[sc.SERVER_PORT] = server_port
        if attributes:
            attrs.update(attributes)
        ctx = otel_context.get_current()  # read once for the attribution and the span's parent
        try:
            attrs.update(current_attributes(ctx))
        except Exception as exc:
            report_internal_error("attribution", exc)
        self.start_attributes = attrs
        self._start_ns = time.time_ns()
        self._t0 = time.perf_counter()
        name = f"{operation} {request_model}" if request_model else operation
        parent_id = trace.get_current_span(ctx).get_span_context().span_id if covered_spans.enabled else 0
        self.span = tracer.start_span(name, ctx, SpanKind.CLIENT, attrs, start_time=self._start_ns)
        self._covered: tuple[int, ...] = ()
        if covered_spans.enabled:
            self._covered = (self.span.get_span_context().span_id, parent_id)
            covered_spans.add(*self._covered)

    # --- nesting --------------------------------------------------------------------------------
    def enter(self) -> None:
        """Mark this call active for calls started inside it (synchronous part only)."""
        parent = _ACTIVE.get()
        if parent is not None and parent is not self:
            parent.delegated = True
        self._token = _ACTIVE.set(self)

    def exit(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _ACTIVE.reset(token)
            except ValueError:  # reset from another context: restore by value instead
                _ACTIVE.set(None)

    def activate(self) -> object | None:
        """Make the span current while the SDK sends the request (HTTP and SDK spans nest under it).
        Pair with :meth:`deactivate` in the same frame, before any stream is handed back."""
        try:
            self.enter()
            return otel_context.attach(trace.set_span_in_context(self.span))
        except Exception as exc:
            report_internal_error("call.activate", exc)
            return None

    def invoke(self, wrapped: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call the SDK with this span current; a failure before any response is a rejected request."""
        token = self.activate()
        try:
            return wrapped(*args, **kwargs)
        except BaseException as exc:
            self.finish(None, exc, rejected=True)
            raise
        finally:
            self.deactivate(token)

    async def ainvoke(self, wrapped: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """:meth:`invoke` for coroutine SDK methods."""
        token = self.activate()
        try:
            return await wrapped(*args, **kwargs)
        except BaseException as exc:
            self.finish(None, exc, rejected=True)
            raise
        finally:
            self.deactivate(token)

    def deactivate(self, token: object | None) -> None:
        try:
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]
            self.exit()
        except Exception as exc:
            report_internal_error("call.deactivate", exc)

    def set_response(self, model: Any = None, response_id: Any = None) -> None:
        """Record the response's model and id when the payload has them as strings."""
        if isinstance(model, str):
            self.response_model = model
        if isinstance(response_id, str):
            self.response_id = response_id

    @property
    def done(self) -> bool:
        return self._done

    # --- progress -------------------------------------------------------------------------------
    def first_chunk(self) -> None:
        """Called by the stream wrappers on every item until set; a JSON answer read through a byte
        stream (the httpx fallback) is no stream and has no time to first chunk."""
        if self.ttfc is None and self.streaming:
            self.ttfc = time.perf_counter() - self._t0

    def add_output_text(self, text: str) -> None:
        """Count streamed output (O(len) in C, no text kept unless content capture is on)."""
        if text.isascii():
            self.out_ascii += len(text)
        else:
            ascii_len = len(text.encode("ascii", "ignore"))
            self.out_ascii += ascii_len
            self.out_non_ascii += len(text) - ascii_len
        if self.output_parts is not None:
            self.output_parts.append(text)

    # --- the end --------------------------------------------------------------------------------
    def finish(self, usage: Usage | None, error: BaseException | None = None, *, rejected: bool = False,
               error_type: str | None = None) -> None:
        """End the call exactly once. ``rejected``: the request failed before any output was produced
        (an HTTP error, a refused connection), so nothing was billed: usage is an exact zero.
        ``error_type`` replaces the error's class name as ``error.type`` (an HTTP status code, as HTTP
        semconv has it, when the failure is a status and no exception of the app's)."""
        if self._done:
            return
        self._done = True
        try:
            if rejected and error is not None and maybe_billed(error):
                rejected = False  # the request reached the model: estimate (flagged) rather than claim $0
            self._finish(usage, error, rejected, error_type)
        except Exception as exc:
            report_internal_error("call.finish", exc)
            try:
                if self.span.is_recording():
                    self.span.end()
            except Exception as exc2:  # pragma: no cover
                report_internal_error("span.end", exc2)

    def _finish(self, usage: Usage | None, error: BaseException | None, rejected: bool,
                error_type: str | None = None) -> None:
        end_ns = time.time_ns()
        duration = time.perf_counter() - self._t0
        if usage is None:
            usage = Usage() if rejected else self._estimate()
        span = self.span
        attrs: dict[str, AttributeValue] = dict(self.response_attributes)
        if self.response_model:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = self.response_model
        if self.response_id:
            attrs[sc.GEN_AI_RESPONSE_ID] = self.response_id
        if self.finish_reasons:
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = list(self.finish_reasons)
        if self.ttfc is not None:
            attrs[sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = self.ttfc
        if self.output_parts:
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = "".join(self.output_parts)
        error_message = None
        if error is None:
            error_type = None
        else:
            error_type = error_type or type(error).__qualname__
            error_message = str(error)[:1000]
            attrs[sc.ERROR_TYPE] = error_type
        if self.delegated:
            # An inner llmtally span carries this call's usage and cost: count it once.
            span.set_attributes(attrs)
            self._end_span(error, end_ns)
            return
        book = self.price_book or default_price_book()
        cost = book.cost(usage, provider=self.provider, request_model=self.request_model,
                         response_model=self.response_model, at_ns=self._start_ns, service_tier=self.service_tier)
        usage_attributes(usage, attrs)
        cost_attributes(cost, attrs)
        if usage.clamped:
            report_malformed_payload(self.provider)
        span.set_attributes(attrs)
        self._end_span(error, end_ns)
        if _listeners:
            ctx = span.get_span_context()
            record = CallRecord(
                provider=self.provider, operation=self.operation, request_model=self.request_model,
                response_model=self.response_model, response_id=self.response_id,
                server_address=self.server_address, server_port=self.server_port, usage=usage, cost=cost,
                streaming=self.streaming, start_time_ns=self._start_ns, end_time_ns=end_ns, duration_s=duration,
                time_to_first_chunk_s=self.ttfc, error_type=error_type, error_message=error_message,
                trace_id=ctx.trace_id, span_id=ctx.span_id, sampled=ctx.trace_flags.sampled,
                attributes={**self.start_attributes, **attrs},
            )
            for listener in list(_listeners):
                try:
                    listener(record)
                except Exception as exc:
                    report_internal_error("listener", exc)

    def _estimate(self) -> Usage:
        input_tokens = 0
        if self.estimate_input is not None:
            try:
                input_tokens = self.estimate_input()
            except Exception as exc:
                report_internal_error("estimate.input", exc)
        return Usage.build(input_tokens=input_tokens,
                           output_tokens=tokens_from_chars(self.out_ascii, self.out_non_ascii), estimated=True)

    def _end_span(self, error: BaseException | None, end_ns: int) -> None:
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, str(error)[:300]))
        self.span.end(end_time=end_ns)
        if self._covered:
            covered_spans.release(*self._covered)


def usage_attributes(usage: Usage, into: dict[str, AttributeValue] | None = None) -> dict[str, AttributeValue]:
    """The span attributes of a Usage, added to ``into`` when given (one dict on the per-call path)."""
    attrs = {} if into is None else into
    attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
    attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
    attrs[sc.LLMTALLY_USAGE_ESTIMATED] = usage.estimated
    if usage.cache_read_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
    if usage.cache_write_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    if usage.clamped:
        attrs[sc.LLMTALLY_USAGE_CLAMPED] = True
    return attrs


def cost_attributes(cost: Cost, into: dict[str, AttributeValue] | None = None) -> dict[str, AttributeValue]:
    """The span attributes of a Cost, added to ``into`` when given."""
    attrs = {} if into is None else into
    attrs[sc.LLMTALLY_COST_STATUS] = cost.status
    if cost.catalog:
        attrs[sc.LLMTALLY_PRICE_CATALOG] = cost.catalog
    if cost.priced_as:
        attrs[sc.LLMTALLY_PRICE_MODEL] = cost.priced_as
    if cost.amount is not None:
        attrs[sc.GEN_AI_USAGE_COST_AMOUNT] = float(cost.amount)
        attrs[sc.GEN_AI_USAGE_COST_CURRENCY] = cost.currency
        if cost.source:
            attrs[sc.GEN_AI_USAGE_COST_SOURCE] = cost.source
        attrs[sc.LLMTALLY_COST_DECIMAL] = format_decimal(cost.amount)
        for leaf, amount in cost.breakdown.items():
            if amount:  # zero leaves are implied: fewer attributes per span
                attrs[sc.LLMTALLY_COST_PREFIX + leaf] = float(amount)
    return attrs


def format_decimal(amount: Any) -> str:
    """Canonical exact string of a Decimal amount (no exponent, no trailing zeros)."""
    text = format(amount.normalize(), "f")
    return "0" if text in ("-0", "") else text
