"""Mistral instrumentor (``mistralai`` >= 1.0, read against 3.7): ``chat.complete`` / ``complete_async`` /
``stream`` / ``stream_async``, ``fim.complete`` / ``complete_async`` / ``stream`` / ``stream_async`` and
``embeddings.create`` / ``create_async``.

Hook points. The SDK (Speakeasy-generated) builds one resource object per client and attribute
(``client.chat`` is a ``Chat``, created lazily) whose methods do everything for one HTTP request: build
it, send it through ``BaseSDK.do_request`` (retries included), parse the answer. Those methods are
wrapped on their classes (``mistralai.client.chat.Chat``, ``.fim.Fim``, ``.embeddings.Embeddings``; in
1.x ``mistralai.chat`` ...), so clients created before ``instrument()`` are covered, the keyword
arguments are the request, and the result is the parsed response or the SDK's ``EventStream`` /
``EventStreamAsync``, which :mod:`.streams` proxies (iteration, ``with`` / ``async with``, ``close``,
early break, garbage collection). ``chat.parse`` / ``parse_stream`` go through these methods. Hooking
``BaseSDK.do_request`` instead would see raw HTTP bytes and every other endpoint (files, batch, OCR) too.
The request is sent before ``stream()`` returns, so an HTTP error of a stream is a rejected request.

Provider ``mistral_ai`` whatever the server URL (a proxy or our fake still speaks Mistral's API);
operations ``chat``, ``text_completion`` (FIM) and ``embeddings``; ``server.address`` from the call's
``server_url`` or the client's. Usage: :func:`llmtally.usage.from_mistral` (``prompt_tokens`` includes
the cached tokens reported in ``prompt_tokens_details.cached_tokens``). Streams always carry usage in
the chunk with the ``finish_reason``; without it the output is estimated from the streamed text. A 2xx
answer the SDK fails to validate (``ResponseValidationError``) was served, so it is never a rejected,
zero-token call: its usage is read from the body, else estimated.

The SDK's own tracing (``mistralai.extra.observability``, tracer ``mistralai_sdk_tracer``). In 3.x it
is opt-in: off by default (no span is made even with a global tracer provider), on with
``MISTRAL_SDK_TELEMETRY=global`` or ``configure_telemetry(client, provider="global")`` (spans into the
global provider, with ``gen_ai.usage.*`` tokens), ``provider=<TracerProvider>`` (that provider) or
``"dedicated"`` (an SDK-owned provider exporting to Mistral, which no llmtally processor sees); 1.x
traced whenever a global provider was set. Decision: *nest under ours, count ours*. Its span starts in
the SDK's ``before_request`` hook, inside the wrapped method while llmtally's span is current (the async
client runs that hook through ``asyncio.to_thread``, which copies the context), so it is a child of
llmtally's span, and the usage processor skips a peer span whose parent is an llmtally span: one call,
counted once, priced once, with both spans kept in the trace. Not turned off: it is the user's opt-in
(and it records message content unconditionally, which is the user's decision, not ours). Without
llmtally's instrumentor the processor converts the SDK's span like any peer's.

Not covered: ``agents.complete`` / ``stream``, conversations, OCR, audio, batch jobs, and the separate
Azure / GCP clients (``mistralai.azure`` / ``mistralai.gcp``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Collection
from enum import Enum
from functools import partial
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.estimate import counter_for, estimate_prompt_tokens
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation._request import jsonable, request_numbers
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import server_of
from llmtally.instrumentation.streams import TracedAsyncStream, TracedStream, UsageAccumulator
from llmtally.usage import Usage, _fields, from_mistral

_settings = Settings()

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

_CHAT, _FIM, _EMBED = sc.Operation.CHAT, sc.Operation.TEXT_COMPLETION, sc.Operation.EMBEDDINGS
_COMPLETION_METHODS = ("complete", "complete_async", "stream", "stream_async")
_RESOURCES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("chat", "Chat", _CHAT, _COMPLETION_METHODS),
    ("fim", "Fim", _FIM, _COMPLETION_METHODS),
    ("embeddings", "Embeddings", _EMBED, ("create", "create_async")),
)


class MistralInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments ``mistralai``. Options of ``instrument()``: ``tracer_provider``, ``price_book``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("mistralai >= 1.0",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        for module, name, operation, methods in _RESOURCES:
            try:
                cls = _resource_class(module, name)
            except Exception as exc:  # an SDK layout we do not know: leave it alone
                report_internal_error("mistralai.instrument", exc)
                continue
            for method in methods:
                if not callable(getattr(cls, method, None)):
                    continue
                _settings.wrap(cls, method, _wrapper(operation, method), "mistralai.instrument")

    def _uninstrument(self, **kwargs: Any) -> None:
        _settings.unwrap_all()


def _resource_class(module: str, name: str) -> type:
    """``mistralai.client.<module>`` (2.x and later), else ``mistralai.<module>`` (1.x)."""
    try:
        found = importlib.import_module(f"mistralai.client.{module}")
    except ImportError:
        found = importlib.import_module(f"mistralai.{module}")
    cls: type = getattr(found, name)
    return cls


def _wrapper(operation: str, method: str) -> Wrapper:
    stream = method.startswith("stream")
    if method.endswith("_async"):
        return _async_stream(operation) if stream else _async_call(operation)
    return _sync_stream(operation) if stream else _sync_call(operation)


# --- starting a call ------------------------------------------------------------------------------

# Unset parameters are the SDK's UNSET sentinel: no number, so request_numbers skips them.
_NUMBERS = (("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS), ("random_seed", sc.GEN_AI_REQUEST_SEED),
            ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE), ("top_p", sc.GEN_AI_REQUEST_TOP_P),
            ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY),
            ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY), ("top_k", sc.GEN_AI_REQUEST_TOP_K))


def _text(value: Any) -> str | None:
    """A str, or the value of a str enum member (no getattr: the SDK's UNSET sentinel makes that slow)."""
    if isinstance(value, Enum):
        value = value.value
    return value if isinstance(value, str) else None


def _server(instance: Any, kwargs: dict[str, Any]) -> tuple[str | None, int | None]:
    url = kwargs.get("server_url")
    if not isinstance(url, str) or not url:
        config = getattr(instance, "sdk_configuration", None)
        url = config.get_server_details()[0] if config is not None else None
    return server_of(url)


def _request_attributes(operation: str, kwargs: dict[str, Any], capture: bool) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    if operation == _EMBED:
        encoding = _text(kwargs.get("encoding_format"))
        if encoding:
            attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [encoding]
    else:
        request_numbers(kwargs.get, _NUMBERS, attrs)
        n = kwargs.get("n")
        if isinstance(n, int) and not isinstance(n, bool) and n != 1:
            attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
        stop = kwargs.get("stop")
        if isinstance(stop, str):
            attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
        elif isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
            attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    if capture:
        prompt = _prompt(operation, kwargs)
        if prompt is not None:
            attrs[sc.GEN_AI_INPUT_MESSAGES] = json.dumps(prompt, default=jsonable)[:100_000]
    return attrs


def _prompt(operation: str, kwargs: dict[str, Any]) -> Any:
    if operation == _CHAT:
        messages = kwargs.get("messages")
        return messages if isinstance(messages, (list, tuple)) else None
    if operation == _EMBED:
        return kwargs.get("inputs")
    return {"prompt": kwargs.get("prompt"), "suffix": _text(kwargs.get("suffix"))}


def _estimate_input(operation: str, kwargs: dict[str, Any], model: str | None) -> int:
    if operation == _CHAT:
        return estimate_prompt_tokens(messages=kwargs.get("messages"), model=model)
    counter = counter_for(model)
    if operation == _EMBED:
        inputs = kwargs.get("inputs")
        texts = [inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, (list, tuple)) else []
        return sum(counter.count(t) for t in texts if isinstance(t, str))
    return sum(counter.count(t) for t in (kwargs.get("prompt"), kwargs.get("suffix")) if isinstance(t, str))


def _start(instance: Any, kwargs: dict[str, Any], operation: str, stream: bool) -> Call | None:
    if not is_instrumentation_enabled():
        return None
    try:
        model = kwargs.get("model")
        model = model if isinstance(model, str) else None
        host, port = _server(instance, kwargs)
        capture = capture_content_enabled()
        return Call(_settings.tracer, provider=sc.Provider.MISTRAL_AI, operation=operation, request_model=model,
                    server_address=host, server_port=port, streaming=stream,
                    attributes=_request_attributes(operation, kwargs, capture), price_book=_settings.price_book,
                    estimate_input=partial(_estimate_input, operation, kwargs, model), capture=capture)
    except Exception as exc:
        report_internal_error("mistralai.start", exc)
        return None


# --- responses --------------------------------------------------------------------------------------

def _usage(call: Call, u: Any) -> Usage | None:
    """Usage of a response's or chunk's ``usage`` when it reports counts, else None (estimate); sets the
    call's service tier from it. One field view of ``u`` (a dict merge: UsageInfo keeps extra fields)
    serves every read."""
    if u is None:
        call.service_tier = None
        return None
    f = _fields(u)
    call.service_tier = _text(f.get("service_tier"))
    # The SDK's UsageInfo defaults absent counts to 0: ask pydantic which ones the payload had.
    present = getattr(u, "__pydantic_fields_set__", None)
    if present is not None:
        if not {"prompt_tokens", "completion_tokens"} & present:
            return None
    elif f.get("prompt_tokens") is None and f.get("completion_tokens") is None:
        return None
    return from_mistral(f)


def _content_texts(content: Any) -> list[str]:
    """Texts of a message's content: a str, or chunks (``text``; ``thinking`` holds text chunks)."""
    if isinstance(content, str):
        return [content] if content else []
    out: list[str] = []
    if isinstance(content, (list, tuple)):
        for part in content:
            if isinstance(part, str):
                out.append(part)
                continue
            p = _fields(part)
            text = p.get("text")
            if isinstance(text, str):
                out.append(text)
            out += _content_texts(p.get("thinking"))
    return out


def _tool_call_texts(tool_calls: Any) -> list[str]:
    out: list[str] = []
    if isinstance(tool_calls, (list, tuple)):
        for tool_call in tool_calls:
            arguments = _fields(_fields(tool_call).get("function")).get("arguments")
            if isinstance(arguments, str):
                out.append(arguments)
            elif isinstance(arguments, dict):
                out.append(json.dumps(arguments))
    return out


def _finish_response(call: Call, operation: str, response: Any, error: BaseException | None = None) -> None:
    try:
        f = _fields(response)
        call.set_response(f.get("model"), f.get("id"))
        usage = _usage(call, f.get("usage"))
        if operation != _EMBED:
            reasons = []
            for choice in f.get("choices") or ():
                c = _fields(choice)
                reason = _text(c.get("finish_reason"))
                if reason:
                    reasons.append(reason)
                if usage is None or call.output_parts is not None:
                    message = _fields(c.get("message"))
                    for text in _content_texts(message.get("content")) + _tool_call_texts(message.get("tool_calls")):
                        call.add_output_text(text)
            if reasons:
                call.finish_reasons = reasons
        call.finish(usage, error)
    except Exception as exc:
        report_internal_error("mistralai.result", exc)
        call.finish(None, error)


def _answered_error(call: Call, operation: str, exc: BaseException) -> None:
    """A 2xx answer the SDK failed to parse was served and may be billed: finish the call with the
    body's usage (else an estimate), not as a rejected request. Other errors are left to Call.invoke."""
    try:
        status = getattr(exc, "status_code", None)
        if not (isinstance(status, int) and 200 <= status < 300):
            return
        body = getattr(exc, "body", None)
        try:
            parsed = json.loads(body) if isinstance(body, (str, bytes)) and body else None
        except ValueError:
            parsed = None
        _finish_response(call, operation, parsed if isinstance(parsed, dict) else None, exc)
    except Exception as exc2:
        report_internal_error("mistralai.error", exc2)


def _run(call: Call, operation: str, wrapped: Callable[..., Any], args: tuple[Any, ...],
         kwargs: dict[str, Any]) -> Any:
    try:
        return wrapped(*args, **kwargs)
    except Exception as exc:
        _answered_error(call, operation, exc)
        raise


async def _arun(call: Call, operation: str, wrapped: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    except Exception as exc:
        _answered_error(call, operation, exc)
        raise


def _sync_call(operation: str) -> Wrapper:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start(instance, kwargs, operation, stream=False)
        if call is None:
            return wrapped(*args, **kwargs)
        result = call.invoke(_run, call, operation, wrapped, args, kwargs)
        _finish_response(call, operation, result)
        return result

    return wrapper


def _async_call(operation: str) -> Wrapper:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        call = _start(instance, kwargs, operation, stream=False)
        if call is None:
            return await wrapped(*args, **kwargs)
        result = await call.ainvoke(_arun, call, operation, wrapped, args, kwargs)
        _finish_response(call, operation, result)
        return result

    return wrapper


# --- streams --------------------------------------------------------------------------------------

class _ChunkAccumulator(UsageAccumulator):
    """``CompletionEvent`` items (``data`` is a ``CompletionChunk``): delta text and tool-call arguments
    counted; the chunk with the ``finish_reason`` carries the usage."""

    __slots__ = ("_reasons",)

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self._reasons: dict[int, str] = {}

    def on_item(self, event: Any) -> bool:
        call = self.call
        data = _fields(event).get("data")
        chunk = event if data is None else data
        f = _fields(chunk)
        if call.response_id is None:
            call.set_response(f.get("model"), f.get("id"))
        for choice in f.get("choices") or ():
            c = _fields(choice)
            delta = _fields(c.get("delta"))
            content = delta.get("content")
            if isinstance(content, str):
                if content:
                    call.add_output_text(content)
            else:
                for text in _content_texts(content):
                    call.add_output_text(text)
            tool_calls = delta.get("tool_calls")
            if isinstance(tool_calls, list):
                for text in _tool_call_texts(tool_calls):
                    call.add_output_text(text)
            reason = _text(c.get("finish_reason"))
            if reason:
                index = c.get("index")
                self._reasons[index if isinstance(index, int) else len(self._reasons)] = reason
                call.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        usage = f.get("usage")
        if usage is not None:
            self._usage = _usage(call, usage)
        return True


def _traced(result: Any, call: Call, proxy: type[TracedStream] | type[TracedAsyncStream]) -> Any:
    try:
        return proxy(result, _ChunkAccumulator(call))
    except Exception as exc:
        report_internal_error("mistralai.stream", exc)
        call.finish(None)
        return result


def _sync_stream(operation: str) -> Wrapper:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call = _start(instance, kwargs, operation, stream=True)
        if call is None:
            return wrapped(*args, **kwargs)
        result = call.invoke(_run, call, operation, wrapped, args, kwargs)  # the request is sent here
        return _traced(result, call, TracedStream)

    return wrapper


def _async_stream(operation: str) -> Wrapper:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        call = _start(instance, kwargs, operation, stream=True)
        if call is None:
            return await wrapped(*args, **kwargs)
        result = await call.ainvoke(_arun, call, operation, wrapped, args, kwargs)
        return _traced(result, call, TracedAsyncStream)

    return wrapper
