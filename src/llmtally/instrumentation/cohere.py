"""Cohere instrumentor (``cohere`` >= 5.0): v2 ``chat``, ``chat_stream`` and ``embed`` of ``ClientV2`` /
``AsyncClientV2`` (and ``Client.v2``), v1 ``chat`` and ``chat_stream`` of ``Client`` / ``AsyncClient``.

Hook points. The public client methods are the wrong place on their own: ``Client.__init__`` stores
bound copies of ``chat`` and ``chat_stream`` on every instance (argument checks and experimental-feature
warnings), so a client created before ``instrument()`` would never be seen. Since cohere 5.16 every public
method delegates to a Fern *raw client* (``cohere.v2.raw_client.RawV2Client`` / ``AsyncRawV2Client``,
``cohere.raw_base_client.RawBaseCohere`` / ``AsyncRawBaseCohere``), looked up at call time, one per HTTP
request and also behind ``with_raw_response``: those are wrapped. Their non-stream methods return an
``HttpResponse`` whose ``data`` is the parsed response; ``chat_stream`` returns a context manager whose
``__enter__`` sends the request and yields an ``HttpResponse`` whose ``data`` iterates the events. Older
SDKs (5.0 to 5.15) have no raw clients: the public methods (``V2Client`` / ``AsyncV2Client``,
``BaseCohere`` / ``AsyncBaseCohere``) are wrapped instead, so there create clients after ``instrument()``.

Provider ``cohere``; operations ``chat`` and ``embeddings``; ``server.address`` from the client's base URL.
Usage: :func:`llmtally.usage.from_cohere`. Cohere reports ``tokens`` (everything the model saw, cached
included, with ``cached_tokens`` beside) and bills ``billed_units``; the span reports the tokens and the
cost prices the billed units. v2 streams carry usage in ``message-end``'s ``delta.usage``, v1 streams in
``stream-end``'s ``response.meta``; without them the output is estimated from the streamed text.

The Bedrock / SageMaker / OCI client variants reach other clouds through httpx event hooks while their
base URL still says ``api.cohere.com``: the hook tells the provider (``aws.bedrock``, ``aws.sagemaker``,
``oci.generative_ai``) and host, checked on real client instances (their traffic itself is not replayed).

Not covered: v1 ``embed`` (batched over a thread pool by ``Client.embed``), ``generate``, ``rerank``.
The SDK does not trace itself (no OpenTelemetry in cohere 7.x), so nothing is counted twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from functools import partial
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.estimate import REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE, counter_for, estimate_prompt_tokens
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation._request import jsonable, request_numbers
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import server_of
from llmtally.instrumentation.streams import (
    TracedAsyncStream,
    TracedStream,
    UsageAccumulator,
    call_lazy,
    lazy_async_stream,
    lazy_stream,
)
from llmtally.usage import Usage, _fields, _get, from_cohere

_settings = Settings()

_V2, _V1, _EMBED = "v2", "v1", "embed"
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class CohereInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments ``cohere``. Options of ``instrument()``: ``tracer_provider``, ``price_book``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("cohere >= 5.0",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        # ``_hooks="public"`` forces the pre-5.16 hook points (for tests on a newer SDK).
        try:
            targets = _targets(kwargs.get("_hooks", "auto"))
        except Exception as exc:  # an SDK layout we do not know: leave it alone
            report_internal_error("cohere.instrument", exc)
            return
        for cls, name, wrapper in targets:
            _settings.wrap(cls, name, wrapper, "cohere.instrument")

    def _uninstrument(self, **kwargs: Any) -> None:
        _settings.unwrap_all()


def _targets(hooks: str) -> list[tuple[type, str, Wrapper]]:
    targets: list[tuple[type, str, Wrapper]] = []
    raw_v2: Any = None
    raw_v1: Any = None
    if hooks != "public":
        try:
            import cohere.raw_base_client as raw_v1
            import cohere.v2.raw_client as raw_v2
        except ImportError:  # cohere < 5.16: no raw clients
            raw_v1 = raw_v2 = None
    if raw_v1 is not None and raw_v2 is not None:
        for v2_cls, v1_cls, is_async in ((raw_v2.RawV2Client, raw_v1.RawBaseCohere, False),
                                         (raw_v2.AsyncRawV2Client, raw_v1.AsyncRawBaseCohere, True)):
            call = _async_call if is_async else _sync_call
            proxy: Callable[[Any, Any], Any] = _TracedAsyncStreamContext if is_async else _TracedStreamContext
            stream = partial(_stream, proxy=proxy)
            targets += [(v2_cls, "chat", call(_V2, raw=True)), (v2_cls, "chat_stream", stream(_V2)),
                        (v2_cls, "embed", call(_EMBED, raw=True)),
                        (v1_cls, "chat", call(_V1, raw=True)), (v1_cls, "chat_stream", stream(_V1))]
        return targets
    import cohere.base_client as base

    pairs: list[tuple[Any, Any, bool]] = [(None, base.BaseCohere, False), (None, base.AsyncBaseCohere, True)]
    try:
        import cohere.v2.client as v2_client  # absent from the first 5.x releases

        pairs = [(v2_client.V2Client, base.BaseCohere, False), (v2_client.AsyncV2Client, base.AsyncBaseCohere, True)]
    except ImportError:
        pass
    for v2_cls, v1_cls, is_async in pairs:
        call = _async_call if is_async else _sync_call
        # Lazy (async) generators: the request is sent on first iteration, with the call current.
        stream = partial(_stream, proxy=lazy_async_stream if is_async else lazy_stream)
        if v2_cls is not None:
            targets += [(v2_cls, "chat", call(_V2, raw=False)), (v2_cls, "chat_stream", stream(_V2)),
                        (v2_cls, "embed", call(_EMBED, raw=False))]
        targets += [(v1_cls, "chat", call(_V1, raw=False)), (v1_cls, "chat_stream", stream(_V1))]
    return targets


# --- starting a call ------------------------------------------------------------------------------

_REQUEST_NUMBERS = (("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS), ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
                    ("p", sc.GEN_AI_REQUEST_TOP_P), ("seed", sc.GEN_AI_REQUEST_SEED),
                    ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
                    ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY), ("k", sc.GEN_AI_REQUEST_TOP_K))


def _start(instance: Any, kwargs: dict[str, Any], api: str, stream: bool) -> Call | None:
    if not is_instrumentation_enabled():
        return None
    try:
        wrapper = getattr(instance, "_client_wrapper", None)
        provider, host, port = _destination(wrapper)
        model = kwargs.get("model")
        model = model if isinstance(model, str) else None
        capture = capture_content_enabled()
        attrs: dict[str, AttributeValue] = {}
        if api == _EMBED:
            formats = kwargs.get("embedding_types")
            if isinstance(formats, (list, tuple)) and all(isinstance(f, str) for f in formats):
                attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = list(formats)
        else:
            request_numbers(kwargs.get, _REQUEST_NUMBERS, attrs)
            stop = kwargs.get("stop_sequences")
            if isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
                attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
        if capture:
            prompt = _prompt(api, kwargs)
            if prompt is not None:
                attrs[sc.GEN_AI_INPUT_MESSAGES] = json.dumps(prompt, default=jsonable)[:100_000]
        return Call(_settings.tracer, provider=provider,
                    operation=sc.Operation.EMBEDDINGS if api == _EMBED else sc.Operation.CHAT,
                    request_model=model, server_address=host, server_port=port, streaming=stream, attributes=attrs,
                    price_book=_settings.price_book, estimate_input=lambda: _estimate(api, kwargs, model),
                    capture=capture)
    except Exception as exc:
        report_internal_error("cohere.start", exc)
        return None


def _destination(wrapper: Any) -> tuple[str, str | None, int | None]:
    """Provider, host and port a client's requests go to. Cohere's Bedrock, SageMaker and OCI clients keep
    ``api.cohere.com`` as their base URL and re-route every request in an httpx request hook
    (``cohere.aws_client`` / ``cohere.oci_client``): the hook's module and its closure tell the cloud."""
    base = wrapper.get_base_url() if wrapper is not None else None
    host, port = server_of(str(base) if base else None)
    try:
        hooks = wrapper.httpx_client.httpx_client.event_hooks.get("request") or ()
    except Exception:  # no httpx client we know of: the base URL is where requests go
        hooks = ()
    for hook in hooks:
        module = getattr(hook, "__module__", None) or ""
        if module.endswith(".oci_client"):
            region = _closure(hook).get("oci_region")
            host = f"inference.generativeai.{region}.oci.oraclecloud.com" if isinstance(region, str) else None
            return sc.Provider.OCI_GENERATIVE_AI, host, 443
        if module.endswith(".aws_client"):
            closure = _closure(hook)
            service, region = closure.get("service"), closure.get("aws_region")
            cloud = sc.Provider.AWS_BEDROCK if service == "bedrock" else sc.Provider.AWS_SAGEMAKER
            runtime = "bedrock-runtime" if service == "bedrock" else "runtime.sagemaker"
            return cloud, (f"{runtime}.{region}.amazonaws.com" if isinstance(region, str) else None), 443
    return sc.Provider.COHERE, host, port


def _closure(function: Any) -> dict[str, Any]:
    names = getattr(getattr(function, "__code__", None), "co_freevars", ())
    cells = getattr(function, "__closure__", None) or ()
    values: dict[str, Any] = {}
    for name, cell in zip(names, cells, strict=False):  # a function without a closure has neither
        try:
            values[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    return values


def _prompt(api: str, kwargs: dict[str, Any]) -> Any:
    if api == _V2:
        return kwargs.get("messages")
    if api == _EMBED:
        texts = kwargs.get("texts")
        return texts if isinstance(texts, (list, tuple)) else kwargs.get("inputs")
    history = kwargs.get("chat_history")
    turns = list(history) if isinstance(history, (list, tuple)) else []
    preamble = kwargs.get("preamble")
    if isinstance(preamble, str):
        turns.insert(0, {"role": "SYSTEM", "message": preamble})
    message = kwargs.get("message")
    if isinstance(message, str):
        turns.append({"role": "USER", "message": message})
    return turns


def _texts(value: Any) -> list[str]:
    """Every text of a v1 turn list or embed inputs: str, ``message``/``text`` fields, ``content`` lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _texts(item)]
    for key in ("message", "text", "content"):
        found = _get(value, key)
        if found is not None:
            return _texts(found)
    return []


def _estimate(api: str, kwargs: dict[str, Any], model: str | None) -> int:
    if api == _V2:
        return estimate_prompt_tokens(messages=kwargs.get("messages"), model=model)
    counter = counter_for(model)
    prompt = _prompt(api, kwargs)
    total = sum(counter.count(t) for t in _texts(prompt))
    if api == _V1 and prompt:
        total += TOKENS_PER_MESSAGE * len(prompt) + REPLY_PRIMING_TOKENS
    return total


# --- responses --------------------------------------------------------------------------------------

def _usage(holder: Any) -> Usage | None:
    """Usage of a response / ``Usage`` / ``ApiMeta`` when it carries counts, else None (estimate)."""
    u = _fields(holder)
    inner = u.get("usage") or u.get("meta")
    if inner is not None:
        u = _fields(inner)
    tokens = _fields(u.get("tokens"))
    billed = _fields(u.get("billed_units"))
    if all(c.get(k) is None for c in (tokens, billed) for k in ("input_tokens", "output_tokens")):
        return None
    return from_cohere(u)


def _reason(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value)).lower()


def _response_texts(api: str, response: Any) -> list[str]:
    f = _fields(response)
    if api == _V1:
        text = f.get("text")
        return [text] if isinstance(text, str) else []
    message = _fields(f.get("message"))
    out = []
    plan = message.get("tool_plan")
    if isinstance(plan, str):
        out.append(plan)
    for part in message.get("content") or ():
        p = _fields(part)
        text = p.get("text") or p.get("thinking")
        if isinstance(text, str):
            out.append(text)
    for tool_call in message.get("tool_calls") or ():
        arguments = _fields(_fields(tool_call).get("function")).get("arguments")
        if isinstance(arguments, str):
            out.append(arguments)
    return out


def _finish_response(call: Call, api: str, response: Any) -> None:
    try:
        usage = _usage(response)
        if api != _EMBED:
            f = _fields(response)
            rid = f.get("id") if api == _V2 else f.get("response_id") or f.get("generation_id")
            if isinstance(rid, str):
                call.response_id = rid
            reason = _reason(f.get("finish_reason"))
            if reason:
                call.finish_reasons = [reason]
            if usage is None or call.output_parts is not None:
                for text in _response_texts(api, response):
                    call.add_output_text(text)
        call.finish(usage)
    except Exception as exc:
        report_internal_error("cohere.result", exc)
        call.finish(None)


def _sync_call(api: str, raw: bool) -> Wrapper:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start(instance, kwargs, api, stream=False)
        if call is None:
            return wrapped(*args, **kwargs)
        result = call.invoke(wrapped, *args, **kwargs)
        _finish_response(call, api, getattr(result, "data", None) if raw else result)
        return result

    return wrapper


def _async_call(api: str, raw: bool) -> Wrapper:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        call = _start(instance, kwargs, api, stream=False)
        if call is None:
            return await wrapped(*args, **kwargs)
        result = await call.ainvoke(wrapped, *args, **kwargs)
        _finish_response(call, api, getattr(result, "data", None) if raw else result)
        return result

    return wrapper


# --- streams --------------------------------------------------------------------------------------

class _V2Accumulator(UsageAccumulator):
    """v2 events: delta text counted; ``message-end`` carries finish reason and usage."""

    __slots__ = ()

    def on_item(self, event: Any) -> bool:
        call = self.call
        f = _fields(event)
        kind = f.get("type")
        text: Any = None
        if kind == "content-delta":
            content = _fields(_fields(_fields(f.get("delta")).get("message")).get("content"))
            text = content.get("text") or content.get("thinking")
        elif kind == "tool-plan-delta":
            text = _fields(_fields(f.get("delta")).get("message")).get("tool_plan")
        elif kind in ("tool-call-start", "tool-call-delta"):
            message = _fields(_fields(f.get("delta")).get("message"))
            text = _fields(_fields(message.get("tool_calls")).get("function")).get("arguments")
        elif kind == "message-start":
            rid = f.get("id")
            if isinstance(rid, str):
                call.response_id = rid
        elif kind == "message-end":
            delta = _fields(f.get("delta"))
            reason = _reason(delta.get("finish_reason"))
            if reason:
                call.finish_reasons = [reason]
            usage = delta.get("usage")
            if usage is not None:
                self._usage = _usage(usage)
        if isinstance(text, str) and text:
            call.add_output_text(text)
        return True


class _V1Accumulator(UsageAccumulator):
    """v1 events: generated text counted; ``stream-end`` carries the whole response with its ``meta``."""

    __slots__ = ()

    def on_item(self, event: Any) -> bool:
        call = self.call
        f = _fields(event)
        kind = f.get("event_type")
        text: Any = None
        if kind == "text-generation":
            text = f.get("text")
        elif kind == "tool-calls-chunk":
            text = f.get("text") or _fields(f.get("tool_call_delta")).get("parameters")
        elif kind == "stream-start":
            gid = f.get("generation_id")
            if isinstance(gid, str):
                call.response_id = gid
        elif kind == "stream-end":
            response = _fields(f.get("response"))
            rid = response.get("response_id")
            if isinstance(rid, str):
                call.response_id = rid
            reason = _reason(f.get("finish_reason") or response.get("finish_reason"))
            if reason:
                call.finish_reasons = [reason]
            self._usage = _usage(response.get("meta"))
        if isinstance(text, str) and text:
            call.add_output_text(text)
        return True



def _accumulator(api: str, call: Call) -> _V2Accumulator | _V1Accumulator:
    return _V2Accumulator(call) if api == _V2 else _V1Accumulator(call)


class _StreamResponse(wrapt.ObjectProxy[Any]):
    """The raw ``HttpResponse`` of a stream, its ``data`` iterator traced."""

    def __init__(self, wrapped: Any, stream: Any) -> None:
        super().__init__(wrapped)
        self._self_stream = stream

    @property
    def data(self) -> Any:
        return self._self_stream


class _TracedStreamContext(wrapt.ObjectProxy[Any]):
    """Raw ``chat_stream()``'s context manager: the request is sent on enter, the call ends on exit at the
    latest (the events' iterator ends it earlier when exhausted or failing)."""

    def __init__(self, wrapped: Any, accumulator: _V2Accumulator | _V1Accumulator) -> None:
        super().__init__(wrapped)
        self._self_acc = accumulator
        self._self_stream: Any = None

    def _self_open(self, response: Any) -> Any:
        try:
            stream = self._self_wrap(response.data)
            self._self_stream = stream
            return _StreamResponse(response, stream)
        except Exception as exc:
            report_internal_error("cohere.stream", exc)
            return response

    def _self_wrap(self, data: Any) -> Any:
        return TracedStream(data, self._self_acc)

    def _self_end(self) -> None:
        try:
            stream = self._self_stream
            if stream is not None:
                stream._self_end(None)  # no-op when the iterator already ended the call
            else:
                self._self_acc.call.finish(None)
        except Exception as exc:
            report_internal_error("cohere.stream", exc)

    def __enter__(self) -> Any:
        return self._self_open(self._self_acc.call.invoke(self.__wrapped__.__enter__))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_end()


class _TracedAsyncStreamContext(_TracedStreamContext):
    def _self_wrap(self, data: Any) -> Any:
        return TracedAsyncStream(data, self._self_acc)

    async def __aenter__(self) -> Any:
        return self._self_open(await self._self_acc.call.ainvoke(self.__wrapped__.__aenter__))

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_end()


def _stream(api: str, proxy: Callable[[Any, Any], Any]) -> Wrapper:
    """A stream method: the SDK's object comes back wrapped in ``proxy`` with this call's accumulator. The
    raw methods return a context manager (the request is sent on enter), the public ones a lazy (async)
    generator (sent on first iteration); calling either is synchronous, so one wrapper serves all four."""
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start(instance, kwargs, api, stream=True)
        if call is None:
            return wrapped(*args, **kwargs)
        return call_lazy(_accumulator(api, call), wrapped, args, kwargs, proxy)

    return wrapper

