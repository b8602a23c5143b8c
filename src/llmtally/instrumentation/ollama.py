"""Ollama instrumentor (the ``ollama`` Python SDK, native API: ``/api/chat``, ``/api/generate``, ``/api/embed``).

Hook points: ``Client.chat`` / ``generate`` / ``embed`` / ``embeddings`` and their ``AsyncClient`` twins,
one HTTP request each. Operations: ``chat``, ``text_completion`` (generate) and ``embeddings``; provider
``ollama``; ``server.address``/``server.port`` from the client's host (``OLLAMA_HOST``, default
``127.0.0.1:11434``). The OpenAI SDK pointed at Ollama's ``/v1`` is the OpenAI instrumentor's business.

The package-level helpers (``ollama.chat(...)``) are methods of a default ``Client`` bound when ``ollama``
was imported, before these wrappers existed: ``instrument()`` rebinds them (only those still pointing at
that default client) so they are counted too, and ``uninstrument()`` restores them.

``stream=True`` returns a lazy generator of ``ChatResponse``/``GenerateResponse`` parts (the request is
sent on first iteration); only the last part (``done: true``) carries ``prompt_eval_count`` (input) and
``eval_count`` (output, thinking included), read with :func:`llmtally.usage.from_ollama`.

Ollama omits ``prompt_eval_count`` when the whole prompt came from its KV cache (ollama/ollama#2068,
#3427): when ``eval_count`` is there, that reads as 0 input tokens, exact and not estimated. Only a
response with neither count (an old server, a cut stream) is estimated from the request and the output.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from functools import partial
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.estimate import heuristic_tokens
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation._request import request_numbers
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import server_of_url
from llmtally.instrumentation.streams import call_lazy, lazy_async_stream
from llmtally.usage import Usage, _fields, _get, from_ollama


class _Settings(Settings):
    rebound: dict[str, Any]

    def __init__(self) -> None:
        super().__init__()
        self.rebound = {}


_settings = _Settings()
_OPERATIONS = {"chat": sc.Operation.CHAT, "generate": sc.Operation.TEXT_COMPLETION,
               "embed": sc.Operation.EMBEDDINGS, "embeddings": sc.Operation.EMBEDDINGS}
_STREAMING = frozenset({"chat", "generate"})
# Positional parameters of each method after ``self`` (ollama/_client.py), to read them from args or kwargs.
_PARAMS = {"chat": ("model", "messages"), "generate": ("model", "prompt", "suffix"),
           "embed": ("model", "input", "truncate", "options"), "embeddings": ("model", "prompt", "options")}


class OllamaInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments ``ollama``. Options of ``instrument()``: ``tracer_provider``, ``price_book``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("ollama >= 0.4",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        try:
            # Not `import ollama._client`: the package rebinds its attribute `_client` to the default Client.
            from ollama import AsyncClient, Client
        except Exception as exc:  # an SDK layout we do not know: leave it alone
            report_internal_error("ollama.instrument", exc)
            return
        for method in _OPERATIONS:
            if hasattr(Client, method):
                _settings.wrap(Client, method, _sync_wrapper(method), "ollama.instrument")
            if hasattr(AsyncClient, method):
                _settings.wrap(AsyncClient, method, _async_wrapper(method), "ollama.instrument")
        _rebind_module_helpers(instrument=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        _settings.unwrap_all()
        _rebind_module_helpers(instrument=False)


def _rebind_module_helpers(instrument: bool) -> None:
    """``ollama.chat`` and friends are bound methods of ``ollama._client`` (the default ``Client``) taken
    at import: point them at the (un)wrapped methods, leaving alone any a user replaced."""
    try:
        import ollama

        default = ollama.__dict__.get("_client")
        if not isinstance(default, ollama.Client):
            return
        for method in _OPERATIONS:
            current = ollama.__dict__.get(method)
            if instrument:
                if inspect.ismethod(current) and current.__self__ is default:
                    bound = getattr(default, method)
                    setattr(ollama, method, bound)
                    _settings.rebound[method] = bound
            elif _settings.rebound.pop(method, None) is current and current is not None:
                setattr(ollama, method, getattr(default, method))
    except Exception as exc:
        report_internal_error("ollama.rebind", exc)


# --- starting a call ------------------------------------------------------------------------------

def _arg(method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], name: str) -> Any:
    if name in kwargs:
        return kwargs[name]
    index = _PARAMS[method].index(name)
    return args[index] if index < len(args) else None


# Request numbers of ``options`` (the model's parameters, Ollama's names).
_NUMBERS = (("num_predict", sc.GEN_AI_REQUEST_MAX_TOKENS), ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
            ("top_p", sc.GEN_AI_REQUEST_TOP_P), ("top_k", sc.GEN_AI_REQUEST_TOP_K), ("seed", sc.GEN_AI_REQUEST_SEED),
            ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
            ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY))


def _start(instance: Any, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any],
           stream: bool) -> Call | None:
    if not is_instrumentation_enabled():
        return None
    try:
        host, port = server_of_url(getattr(getattr(instance, "_client", None), "base_url", None))  # httpx.URL
        model = _arg(method, args, kwargs, "model")
        capture = capture_content_enabled()
        options = kwargs.get("options") if method in _STREAMING else _arg(method, args, kwargs, "options")
        attrs: dict[str, AttributeValue] = request_numbers(partial(_get, options), _NUMBERS, {})
        stop = _get(options, "stop")
        if isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
            attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
        texts = _input_texts(method, args, kwargs)
        if capture and texts:
            attrs[sc.GEN_AI_INPUT_MESSAGES] = "\n".join(texts)[:100_000]
        return Call(_settings.tracer, provider=sc.Provider.OLLAMA, operation=_OPERATIONS[method],
                    request_model=model if isinstance(model, str) and model else None,
                    server_address=host, server_port=port, streaming=stream, attributes=attrs,
                    price_book=_settings.price_book, estimate_input=lambda: _estimate(texts), capture=capture)
    except Exception as exc:
        report_internal_error("ollama.start", exc)
        return None


def _input_texts(method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    """The request's text, for the input estimate (and captured content): messages, prompt, input."""
    try:
        if method == "chat":
            out = []
            for message in _arg(method, args, kwargs, "messages") or ():
                content = _get(message, "content")
                if isinstance(content, str):
                    out.append(content)
            return out
        if method == "generate":
            values = [kwargs.get("system"), _arg(method, args, kwargs, "prompt"), _arg(method, args, kwargs, "suffix")]
            return [v for v in values if isinstance(v, str) and v]
        if method == "embed":
            value = _arg(method, args, kwargs, "input")
            if isinstance(value, str):
                return [value]
            return [v for v in value or () if isinstance(v, str)]
        prompt = _arg(method, args, kwargs, "prompt")
        return [prompt] if isinstance(prompt, str) else []
    except Exception as exc:
        report_internal_error("ollama.input", exc)
        return []


def _estimate(texts: list[str]) -> int:
    return sum(heuristic_tokens(t) for t in texts)


# --- wrappers -------------------------------------------------------------------------------------

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


def _sync_wrapper(method: str) -> Wrapper:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        stream = method in _STREAMING and bool(kwargs.get("stream"))
        call = _start(instance, method, args, kwargs, stream)
        if call is None:
            return wrapped(*args, **kwargs)
        if stream:
            # A lazy generator: the request is sent on first iteration, which runs with the call current.
            return call_lazy(_PartAccumulator(call, method == "chat"), wrapped, args, kwargs)
        result = call.invoke(wrapped, *args, **kwargs)
        _finish_response(call, method, result)
        return result

    return wrapper


def _async_wrapper(method: str) -> Wrapper:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        stream = method in _STREAMING and bool(kwargs.get("stream"))
        call = _start(instance, method, args, kwargs, stream)
        if call is None:
            return await wrapped(*args, **kwargs)
        result = await call.ainvoke(wrapped, *args, **kwargs)
        if stream:  # an async generator: the request is sent on first iteration, with the call current
            return lazy_async_stream(result, _PartAccumulator(call, method == "chat"))
        _finish_response(call, method, result)
        return result

    return wrapper


# --- responses ------------------------------------------------------------------------------------

def _has_counts(fields: Mapping[str, Any]) -> bool:
    return fields.get("prompt_eval_count") is not None or fields.get("eval_count") is not None


def _output_texts(fields: Mapping[str, Any], chat: bool) -> list[str]:
    """Generated text of a response or stream part: content and thinking (both are in ``eval_count``)."""
    if chat:
        message = _fields(fields.get("message"))
        values = [message.get("content"), message.get("thinking"), *_tool_call_texts(message.get("tool_calls"))]
    else:
        values = [fields.get("response"), fields.get("thinking")]
    return [v for v in values if isinstance(v, str) and v]


def _tool_call_texts(tool_calls: Any) -> list[Any]:
    values = []
    for tool_call in tool_calls or ():
        function = _fields(_fields(tool_call).get("function"))
        values.append(function.get("name"))
        arguments = function.get("arguments")
        if arguments:
            values.append(str(arguments))
    return values


def _finish_response(call: Call, method: str, response: Any) -> None:
    try:
        fields = _fields(response)
        model = fields.get("model")
        if isinstance(model, str) and model:
            call.response_model = model
        usage: Usage | None = None
        if method in _STREAMING:
            reason = fields.get("done_reason")
            if isinstance(reason, str) and reason:
                call.finish_reasons = [reason]
            if _has_counts(fields):
                usage = from_ollama(response)
            else:
                for text in _output_texts(fields, method == "chat"):
                    call.add_output_text(text)
        elif fields.get("prompt_eval_count") is not None:  # /api/embed; the deprecated /api/embeddings has none
            usage = Usage.build(input_tokens=fields.get("prompt_eval_count"))
        call.finish(usage)
    except Exception as exc:
        report_internal_error("ollama.result", exc)
        call.finish(None)


class _PartAccumulator:
    """ChatResponse/GenerateResponse parts: text counted, usage from the ``done`` part's counts."""

    __slots__ = ("_chat", "_final", "call")

    def __init__(self, call: Call, chat: bool) -> None:
        self.call = call
        self._chat = chat
        self._final: Any = None

    def on_item(self, part: Any) -> bool:
        # Per part: the texts read in place (as _output_texts, without its lists), the model once.
        call = self.call
        fields = _fields(part)
        if call.response_model is None:  # every part repeats it
            model = fields.get("model")
            if isinstance(model, str) and model:
                call.response_model = model
        tools: Any = None
        if self._chat:
            message = _fields(fields.get("message"))
            text, thinking, tools = message.get("content"), message.get("thinking"), message.get("tool_calls")
        else:
            text, thinking = fields.get("response"), fields.get("thinking")
        if isinstance(text, str) and text:
            call.add_output_text(text)
        if isinstance(thinking, str) and thinking:
            call.add_output_text(thinking)
        if tools:
            for value in _tool_call_texts(tools):
                if isinstance(value, str) and value:
                    call.add_output_text(value)
        if fields.get("done"):
            reason = fields.get("done_reason")
            if isinstance(reason, str) and reason:
                call.finish_reasons = [reason]
            if _has_counts(fields):
                self._final = part
        return True

    def usage(self) -> Usage | None:
        return None if self._final is None else from_ollama(self._final)
