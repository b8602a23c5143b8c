"""The httpx fallback: LLM calls made over ``httpx`` / ``httpx2`` without an SDK llmtally instruments.

What it recognises (POST only, any path prefix, so ``/v1``, ``/openai/v1`` and Azure's
``/openai/deployments/<name>/`` all match):

* OpenAI-compatible ``/chat/completions``, ``/completions``, ``/responses``, ``/embeddings``;
* Anthropic-compatible ``/v1/messages`` (``/v1/messages/count_tokens`` is not billed inference).

The request body must be JSON (a non-JSON or streamed request body is left alone); the model comes from
it (or from an Azure deployment path). Usage comes from the response body, JSON or SSE, parsed with the
same normalisers as the SDK instrumentors.

Hook point, and why not opentelemetry-instrumentation-httpx's hooks
-------------------------------------------------------------------
``Client.send`` / ``AsyncClient.send`` of both ``httpx`` and ``httpx2`` (openai >= 3 and anthropic >= 2
use ``httpx2``): every request of a client goes through ``send`` (``post``, ``request``, ``stream``,
module-level ``httpx.post``), whatever its transport. The upstream HTTP instrumentation hooks the
default transports' ``handle_request``: its response hook runs when the headers arrive, before any body
byte, so it cannot see usage in a body the app reads later; it does not see custom transports
(``MockTransport``, proxies' own transports); and it would make llmtally depend on it. So llmtally does not use
its hooks and works without it. When it is installed too, llmtally's span is the current span while
``send`` runs, so its HTTP span is a *child* of the GenAI span (the nesting GenAI semconv describes, as
under the SDK instrumentors' spans); its spans carry no token usage and are never counted.

Never counted twice
-------------------
A request is skipped when an llmtally call is already active in the context (an SDK instrumentor, or
LiteLLM's, is sending it: ``Call`` marks itself active while the SDK sends), and when OpenTelemetry's
``suppress_instrumentation`` or ``suppress_http_instrumentation`` is set. When a peer GenAI span that
carries usage (OpenLLMetry, the anthropic SDK's own tracing) is current, the fallback's span is its
child and the usage processor counts the call once, on llmtally's span.

Reading the body without taking it from the app
-----------------------------------------------
A response that ``send`` already read (``stream=False``) is parsed from ``response.content``. A streamed
response (``client.stream(...)``, ``send(stream=True)``) gets its byte stream wrapped in the shared
:class:`~llmtally.instrumentation.streams.TracedStream` / ``TracedAsyncStream``: llmtally sees the bytes
as the app reads them (``iter_bytes``, ``iter_lines``, ``read``, ...), decodes them with a decoder of its
own (``Content-Encoding``), and parses SSE one event at a time (never the whole stream). A JSON body read
through a stream is kept up to 4 MiB; past that only its last 64 KiB, where ``usage`` is. The call ends
exactly once: exhausted, closed, context exit, error, or garbage collection.

Outcomes: a non-2xx status is a rejected request (``error.type`` = the status code, as HTTP semconv has
it; usage an exact zero; the body is not read on the app's behalf). A body that is not the JSON or SSE it
should be is counted in ``llmtally.payloads.malformed`` and the call is estimated. No usage in the body
(a stream without ``stream_options.include_usage``, an early close) means estimated counts, flagged.

Provider: from the host (:mod:`.hosts`); ``host_providers`` (``instrument()`` option, or
``LLMTALLY_HTTPX_HOST_PROVIDERS="10.0.0.5:8000=vllm,litellm.internal=wire"``) maps others, where ``wire``
means the API the path speaks (``openai`` or ``anthropic``: a gateway that forwards each wire to its own
provider); port 11434 is Ollama (``ollama``, cost status ``free``). Any other unknown host is
``openai_compatible`` or ``anthropic_compatible``, which no catalog prices: a self-hosted server's
``gpt-oss-20b`` must not be priced at OpenAI's list price (the catalog has one), so such calls are
``unpriced`` (counted, never $0) until a price file names that provider (or omits the provider) or
``host_providers`` says whose API the host serves. (The SDK instrumentors assume the SDK's own provider
for an unknown host: an app that chose the ``openai`` SDK for it most often talks to OpenAI or a proxy
of it; raw HTTP to an unknown host is more often a self-hosted server.)
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_http_instrumentation_enabled, is_instrumentation_enabled

from llmtally import semconv as sc
from llmtally.instrumentation import anthropic as anthropic_instr
from llmtally.instrumentation import openai as openai_instr
from llmtally.instrumentation._guard import report_internal_error, report_malformed_payload
from llmtally.instrumentation.call import _ACTIVE, Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import provider_for_host, url_server
from llmtally.instrumentation.streams import TracedAsyncStream, TracedStream
from llmtally.usage import (
    Usage,
    from_anthropic,
    from_openai_chat,
    from_openai_embeddings,
    from_openai_responses,
    merge_anthropic_stream_usage,
)

ENV_HOST_PROVIDERS = "LLMTALLY_HTTPX_HOST_PROVIDERS"
WIRE = "wire"
"""A ``host_providers`` value: the provider whose API the wire is (``openai`` for the OpenAI-compatible
paths, ``anthropic`` for ``/v1/messages``), for a gateway that forwards each wire to its own provider."""
OLLAMA_PORT = 11434
PACKAGES = ("httpx", "httpx2")

CHAT, RESPONSES, COMPLETIONS, EMBEDDINGS = openai_instr.CHAT, openai_instr.RESPONSES, openai_instr.COMPLETIONS, \
    openai_instr.EMBEDDINGS
MESSAGES = anthropic_instr.MESSAGES
# The OpenAI endpoints this fallback reads (not images: no usage parser for them here), matched by the
# OpenAI instrumentor's table and cache.
_OPENAI_KINDS = frozenset({CHAT, RESPONSES, COMPLETIONS, EMBEDDINGS})
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]+)/")

JSON_BODY_LIMIT = 4 * 1024 * 1024
"""A JSON body read through a stream is kept whole up to this size (chat and responses bodies are far
smaller); past it, only its tail (embeddings of large batches: ``usage`` comes last)."""
JSON_TAIL = 64 * 1024
_JSON = json.JSONDecoder()
SSE_EVENT_LIMIT = 16 * 1024 * 1024
"""One SSE event larger than this is dropped (a misbehaving server must not grow memory without bound)."""


class _Settings(Settings):
    host_providers: dict[str, str]

    def __init__(self) -> None:
        super().__init__()
        self.host_providers = {}


_settings = _Settings()


class HttpxInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The LLM fallback for raw ``httpx`` / ``httpx2`` clients (see the module docstring).

    Options of ``instrument()``: ``tracer_provider``, ``price_book``, ``host_providers`` (a mapping of
    ``"host"`` or ``"host:port"`` to ``gen_ai.provider.name``, over ``LLMTALLY_HTTPX_HOST_PROVIDERS``).
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ()  # either package will do: each one installed is instrumented

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        mapping = parse_host_providers(os.environ.get(ENV_HOST_PROVIDERS, ""))
        mapping.update({str(k).lower(): str(v) for k, v in (kwargs.get("host_providers") or {}).items()})
        _settings.host_providers = mapping
        for name in PACKAGES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            _settings.wrap(getattr(module, "Client", None), "send", _sync_send, "httpx.instrument")
            _settings.wrap(getattr(module, "AsyncClient", None), "send", _async_send, "httpx.instrument")

    def _uninstrument(self, **kwargs: Any) -> None:
        _settings.unwrap_all()


def parse_host_providers(text: str) -> dict[str, str]:
    """``"host=provider,host:port=provider"`` -> mapping (keys lower-case); malformed items are skipped."""
    out: dict[str, str] = {}
    for item in text.split(","):
        host, sep, provider = item.partition("=")
        if sep and host.strip() and provider.strip():
            out[host.strip().lower()] = provider.strip()
    return out


# --- which requests, and the start of a call --------------------------------------------------------

@dataclass(slots=True)
class _Plan:
    call: Call
    kind: str


def endpoint(path: str) -> tuple[str, str, str | None] | None:
    """(kind, operation, openai.api.type) of an LLM endpoint path, else None (pure)."""
    if path.rstrip("/").endswith("/v1/messages"):
        return MESSAGES, sc.Operation.CHAT, None
    found = openai_instr._endpoint(path)
    return found if found is not None and found[0] in _OPENAI_KINDS else None


def provider_for(host: str | None, port: int | None, kind: str) -> str:
    """``gen_ai.provider.name`` of an endpoint (see the module docstring for unknown hosts)."""
    host = (host or "").lower()
    mapping = _settings.host_providers
    if mapping:
        configured = mapping.get(f"{host}:{port}") or mapping.get(host)
        if configured == WIRE:
            return sc.Provider.ANTHROPIC if kind == MESSAGES else sc.Provider.OPENAI
        if configured:
            return configured
    known = provider_for_host(host, default="")
    if known:
        return known
    if port == OLLAMA_PORT:
        return sc.Provider.OLLAMA
    return sc.Provider.ANTHROPIC_COMPATIBLE if kind == MESSAGES else sc.Provider.OPENAI_COMPATIBLE


def _json_body(request: Any) -> dict[str, Any] | None:
    """The request's JSON object, or None for a body that is not JSON or not in memory (a generator)."""
    ctype = request.headers.get("content-type")
    if ctype and "json" not in ctype.lower():
        return None
    try:
        content = request.content  # raises RequestNotRead for a streamed request body: left alone
    except Exception:
        return None
    if not content:
        return None
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _start(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _Plan | None:
    request = args[0] if args else kwargs.get("request")
    try:
        if request is None or request.method != "POST":
            return None
        url = request.url
        found = endpoint(url.path)
        if found is None:
            return None
    except Exception as exc:
        report_internal_error("httpx.start", exc)
        return None
    if _ACTIVE.get() is not None or not is_instrumentation_enabled() or not is_http_instrumentation_enabled():
        return None  # an SDK instrumentor (or a peer that suppressed HTTP instrumentation) has this call
    try:
        body = _json_body(request)
        if body is None:
            return None
        kind, operation, api_type = found
        model = body.get("model")
        if not isinstance(model, str) or not model:
            deployment = _AZURE_DEPLOYMENT.search(url.path)
            model = deployment.group(1) if deployment else None
        host, port = url_server(url)  # a new URL object per request: nothing worth caching
        capture = capture_content_enabled()
        estimate: Callable[[], int]
        if kind == MESSAGES:
            attrs = anthropic_instr._request_attributes(body, capture)
            estimate = partial(anthropic_instr._estimate_input, body, model)
        else:
            attrs = openai_instr._request_attributes(kind, body, api_type, capture)
            estimate = partial(openai_instr._estimate_input, kind, body, model)
        call = Call(_settings.tracer, provider=provider_for(host, port, kind), operation=operation,
                    request_model=model, server_address=host, server_port=port,
                    streaming=body.get("stream") is True, attributes=attrs, price_book=_settings.price_book,
                    estimate_input=estimate, capture=capture)
        tier = body.get("service_tier")
        if isinstance(tier, str):  # "auto"/"default": the engine prices them as standard
            call.service_tier = tier
        return _Plan(call, kind)
    except Exception as exc:
        report_internal_error("httpx.start", exc)
        return None


# --- the wrappers ---------------------------------------------------------------------------------

def _sync_send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    plan = _start(args, kwargs)
    if plan is None:
        return wrapped(*args, **kwargs)
    response = plan.call.invoke(wrapped, *args, **kwargs)  # our span current: HTTP spans nest under it
    return _result(plan, response, streamed=bool(kwargs.get("stream")), is_async=False)


async def _async_send(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
    plan = _start(args, kwargs)
    if plan is None:
        return await wrapped(*args, **kwargs)
    response = await plan.call.ainvoke(wrapped, *args, **kwargs)
    return _result(plan, response, streamed=bool(kwargs.get("stream")), is_async=True)


def _result(plan: _Plan, response: Any, *, streamed: bool, is_async: bool) -> Any:
    call = plan.call
    try:
        status = response.status_code
        if not 200 <= status < 300:
            _finish_rejected(call, response, read=not streamed)
            return response
        body = _BodyObserver(call, plan.kind, response.headers.get("content-type"))
        if not streamed:  # send() has read the body (decoded): parse it now
            body.feed(response.content)
            call.finish(body.usage())
            return response
        body.decoder = _content_decoder(response)
        stream = TracedAsyncStream if is_async else TracedStream
        response.stream = stream(response.stream, body)
    except Exception as exc:
        report_internal_error("httpx.result", exc)
        call.finish(None)
    return response


class HTTPStatusFailure(Exception):
    """The outcome of a non-2xx response (no exception reaches the app: httpx returns the response)."""


def _finish_rejected(call: Call, response: Any, *, read: bool) -> None:
    status = int(response.status_code)
    message = f"HTTP {status} {getattr(response, 'reason_phrase', '') or ''}".rstrip()
    if read:  # only a body send() already read: a streamed error body is the app's to read
        detail = _error_message(response.content)
        if detail:
            message = f"{message}: {detail}"
    call.finish(None, HTTPStatusFailure(message), rejected=True, error_type=str(status))


def _error_message(content: bytes) -> str | None:
    """The provider's error message: OpenAI ``{"error": {"message"}}``, Anthropic ``{"error": {...}}``."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    if message is None and isinstance(body, dict):
        message = body.get("message")
    return message[:500] if isinstance(message, str) else None


# --- content decoding ---------------------------------------------------------------------------------

class _Undecodable(Exception):
    """A Content-Encoding the HTTP package cannot decode either: the call is estimated."""


Decoder = Callable[[bytes, bool], bytes]


def _content_decoder(response: Any) -> Decoder | None:
    """A fresh decoder for the response's Content-Encoding (None for identity).

    The app's own decoder lives on the response and must not be shared; a new instance of the same
    package's decoder classes (private ``_decoders.SUPPORTED_DECODERS``, present in httpx and httpx2)
    decodes exactly what the app can. Any failure here means: estimate.
    """
    encoding = str(response.headers.get("content-encoding") or "").strip().lower()
    codings = [c.strip() for c in encoding.split(",") if c.strip() and c.strip() != "identity"]
    if not codings:
        return None
    try:
        package = type(response).__module__.split(".", 1)[0]
        table = importlib.import_module(f"{package}._decoders").SUPPORTED_DECODERS
        chain = [table[c]() for c in reversed(codings)]
    except Exception:
        def undecodable(data: bytes, final: bool) -> bytes:
            raise _Undecodable(encoding)
        return undecodable

    def joined(out: Any) -> bytes:
        return out if isinstance(out, bytes) else b"".join(out)  # httpx2's decoders yield bytes

    def decode(data: bytes, final: bool) -> bytes:
        for decoder in chain:
            data = joined(decoder.decode(data))
            if final:
                data += joined(decoder.flush())
        return data

    return decode


# --- bodies ----------------------------------------------------------------------------------------

class _BodyObserver:
    """Accumulator (for TracedStream) over a response body's raw bytes: JSON or SSE, O(1) memory for SSE."""

    __slots__ = ("_events", "_json", "_json_size", "_malformed", "_mode", "_tail", "_whole", "call", "ctype",
                 "decoder", "kind")

    def __init__(self, call: Call, kind: str, content_type: str | None) -> None:
        self.call = call
        self.kind = kind
        self.ctype = (content_type or "").lower()
        self.decoder: Decoder | None = None
        self._mode: str | None = "sse" if "event-stream" in self.ctype else "json" if "json" in self.ctype else None
        self._events: _SSEParser | None = None
        self._json: list[bytes] = []
        self._json_size = 0
        self._tail = b""
        self._whole: bytes | None = None
        self._malformed = False

    # TracedStream's accumulator protocol -----------------------------------------------------------
    def on_item(self, raw: Any) -> bool:
        if self._mode == "blind" or not isinstance(raw, (bytes, bytearray)):
            return True
        data = bytes(raw)
        if self.decoder is not None:
            try:
                data = self.decoder(data, False)
            except Exception:
                self._mode = "blind"  # an encoding we cannot decode: estimated
                return True
        self._consume(data)
        return True

    def usage(self) -> Usage | None:
        if self.decoder is not None and self._mode != "blind":
            try:
                self._consume(self.decoder(b"", True))
            except Exception:
                self._mode = "blind"
        if self._mode == "sse" and self._events is not None:
            usage = self._events.finish()
            malformed = self._malformed or self._events.malformed
        elif self._mode == "json":
            usage, malformed = self._json_usage()
        else:
            return None
        if malformed:
            report_malformed_payload(self.call.provider)
        return usage

    # a body already in memory ---------------------------------------------------------------------
    def feed(self, content: bytes) -> None:
        if self._mode is None:
            self._sniff(content)
        if self._mode == "json":
            self._whole = content  # no copy: send() holds it anyway
        else:
            self._consume(content)

    # internals ------------------------------------------------------------------------------------
    def _sniff(self, data: bytes) -> None:
        """No (useful) Content-Type: a body that opens with ``{`` or ``[`` is JSON, anything else SSE."""
        head = data.lstrip()[:1]
        if head:
            self._mode = "json" if head in (b"{", b"[") else "sse"

    def _consume(self, data: bytes) -> None:
        if not data:
            return
        if self._mode is None:
            self._sniff(data)
        if self._mode == "sse":
            if self._events is None:
                self._events = _SSEParser(_stream_handler(self.call, self.kind))
            self._events.feed(data)
        elif self._mode == "json":
            if self._json_size <= JSON_BODY_LIMIT:
                self._json.append(data)
                self._json_size += len(data)
                if self._json_size > JSON_BODY_LIMIT:  # too big to keep: from now on only the tail
                    self._tail = b"".join(self._json)[-JSON_TAIL:]
                    self._json = []
            else:
                self._tail = (self._tail + data)[-JSON_TAIL:]

    def _json_usage(self) -> tuple[Usage | None, bool]:
        if self._whole is not None or self._json_size <= JSON_BODY_LIMIT:
            content = self._whole if self._whole is not None else b"".join(self._json)
            try:
                body = json.loads(content)
            except ValueError:
                return None, True
            if not isinstance(body, dict):
                return None, True
            return apply_json(self.call, self.kind, body), False
        return apply_json(self.call, self.kind, tail_fields(self._tail)), False


def tail_fields(tail: bytes) -> dict[str, Any]:
    """``usage`` and ``model`` of a JSON object from its last bytes only (pure).

    A key is found by its quoted name: inside a JSON string a quote is escaped, so ``"usage"`` followed
    by a colon can only be a key; the last one is the top-level one in every format here (it comes last).
    """
    out: dict[str, Any] = {}
    text = tail.decode("utf-8", "replace")
    for key in ("usage", "model"):
        for match in reversed(list(re.finditer(rf'"{key}"\s*:\s*', text))):
            try:
                value, _ = _JSON.raw_decode(text, match.end())
            except ValueError:
                continue
            out[key] = value
            break
    return out


def apply_json(call: Call, kind: str, body: Mapping[str, Any]) -> Usage | None:
    """Record a JSON response's model, id and finish reasons on the call; its usage, or None (estimate)."""
    call.set_response(body.get("model"), body.get("id"))
    usage = _json_usage(call, kind, body)
    if usage is None or call.capture:  # the output text: what an estimate has, or captured content
        if kind == MESSAGES:
            for block in body.get("content") or ():
                _count(call, block.get("text") if isinstance(block, Mapping) else None)
        elif kind != EMBEDDINGS:
            openai_instr._count_output(kind, body, call)
    return usage


def _json_usage(call: Call, kind: str, body: Mapping[str, Any]) -> Usage | None:
    usage = body.get("usage")
    if kind == MESSAGES:
        reason = body.get("stop_reason")
        if isinstance(reason, str):
            call.finish_reasons = [reason]
        return from_anthropic(body) if isinstance(usage, Mapping) else None
    tier = body.get("service_tier")
    if isinstance(tier, str):
        call.response_attributes[sc.OPENAI_RESPONSE_SERVICE_TIER] = tier
    if kind == EMBEDDINGS:
        return from_openai_embeddings(body) if isinstance(usage, Mapping) else None
    if kind == RESPONSES:
        status = body.get("status")
        if isinstance(status, str):
            call.finish_reasons = [status]
        if isinstance(usage, Mapping):
            return from_openai_responses(body)
    else:
        reasons = [c["finish_reason"] for c in body.get("choices") or ()
                   if isinstance(c, Mapping) and isinstance(c.get("finish_reason"), str)]
        if reasons:
            call.finish_reasons = reasons
        groq = body.get("x_groq")
        if isinstance(usage, Mapping) or (isinstance(groq, Mapping) and isinstance(groq.get("usage"), Mapping)):
            return from_openai_chat(body)
    return None


# --- server-sent events ------------------------------------------------------------------------------

class _SSEParser:
    """Incremental SSE (``text/event-stream``) parser: bytes in, ``(event, data)`` out, one event in memory."""

    __slots__ = ("_data", "_event", "_rest", "_size", "_skip_lf", "handler", "malformed")

    def __init__(self, handler: _StreamHandler) -> None:
        self.handler = handler
        self._rest = b""
        self._skip_lf = False
        self._event: str | None = None
        self._data: list[bytes] | None = None
        self._size = 0
        self.malformed = False

    def feed(self, chunk: bytes) -> None:
        if (chunk.endswith(b"\n\n") and not self._rest and not self._skip_lf and self._data is None
                and self._event is None and b"\r" not in chunk):
            # The common case, whole events of one `data:` line each: no line-by-line state machine.
            for block in chunk[:-2].split(b"\n\n"):
                if block.startswith(b"data: ") and b"\n" not in block:
                    self._payload(None, block[6:])
                else:
                    for line in block.split(b"\n"):
                        self._line(line)
                    self._dispatch()
            return
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if self._rest:
            chunk = self._rest + chunk
        if b"\r" in chunk:
            # CR, LF and CRLF all end a line. A CR closing this chunk may be the first half of a CRLF
            # split across chunks: its LF, opening the next chunk, must not end an empty line (an event).
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = chunk.split(b"\n")
        rest = lines.pop()
        for line in lines:
            self._line(line)
        if len(rest) > SSE_EVENT_LIMIT:
            self.malformed = True
            rest = b""
        self._rest = rest

    def _line(self, line: bytes) -> None:
        if not line:
            self._dispatch()
        elif line.startswith(b"data:"):
            value = line[6:] if line[5:6] == b" " else line[5:]
            if self._data is None:
                self._data = []
            self._size += len(value)
            if self._size > SSE_EVENT_LIMIT:
                self.malformed = True
                self._data, self._size = [], 0
            self._data.append(value)
        elif line.startswith(b"event:"):
            self._event = line[6:].strip().decode("utf-8", "replace")
        # comments (":"), id: and retry: carry nothing for usage

    def _dispatch(self) -> None:
        data, event = self._data, self._event
        self._data, self._event, self._size = None, None, 0
        if data is not None:
            self._payload(event, data[0] if len(data) == 1 else b"\n".join(data))

    def _payload(self, event: str | None, payload: bytes) -> None:
        if payload == b"[DONE]" or not self.handler.wants(event):
            return
        try:
            obj = _JSON.decode(payload.decode("utf-8"))  # UnicodeDecodeError is a ValueError too
        except ValueError:
            self.malformed = True
            return
        if type(obj) is dict:
            self.handler.on_event(obj)
        else:
            self.malformed = True

    def finish(self) -> Usage | None:
        """End of stream: a last event without its blank line still counts (some servers omit it)."""
        if self._rest:
            self._line(self._rest)
        self._rest = b""
        self._dispatch()
        return self.handler.usage()


class _StreamHandler:
    __slots__ = ()
    call: Call

    def wants(self, event: str | None) -> bool:
        return True

    def on_event(self, obj: dict[str, Any]) -> None:
        raise NotImplementedError

    def usage(self) -> Usage | None:
        raise NotImplementedError


def _stream_handler(call: Call, kind: str) -> _StreamHandler:
    if kind == MESSAGES:
        return _AnthropicEvents(call)
    if kind == RESPONSES:
        return _ResponsesEvents(call)
    return _ChatChunks(call, legacy=kind == COMPLETIONS)


def _count(call: Call, text: Any) -> None:
    if type(text) is str and text:
        if call.output_parts is None and text.isascii():
            call.out_ascii += len(text)  # inline: the common case of every chunk
        else:
            call.add_output_text(text)


class _ChatChunks(_StreamHandler):
    """Chat completion / legacy completion chunks: the last non-null ``usage`` (some servers repeat it,
    cumulative), Groq's ``x_groq.usage``; text and tool arguments counted for the estimate."""

    __slots__ = ("_reasons", "_usage", "call", "legacy")

    def __init__(self, call: Call, legacy: bool) -> None:
        self.call, self.legacy = call, legacy
        self._usage: Mapping[str, Any] | None = None
        self._reasons: dict[int, str] = {}

    def on_event(self, obj: dict[str, Any]) -> None:
        # The per-chunk path of every stream: exact `type(...) is` checks (the objects come from json).
        call = self.call
        if call.response_model is None:
            call.set_response(obj.get("model"), obj.get("id"))
            tier = obj.get("service_tier")
            if isinstance(tier, str):
                call.response_attributes[sc.OPENAI_RESPONSE_SERVICE_TIER] = tier
        usage = obj.get("usage")
        if type(usage) is dict:
            self._usage = usage
        choices = obj.get("choices")
        if type(choices) is not list:
            choices = ()
        for choice in choices:
            if type(choice) is not dict:
                continue
            if self.legacy:
                _count(call, choice.get("text"))
            else:
                delta = choice.get("delta")
                if type(delta) is dict:
                    content = delta.get("content")
                    if content:
                        _count(call, content)
                    _count(call, delta.get("reasoning_content") or delta.get("reasoning"))  # DeepSeek, vLLM
                    tool_calls = delta.get("tool_calls")
                    if type(tool_calls) is list:
                        for tool_call in tool_calls:
                            function = tool_call.get("function") if type(tool_call) is dict else None
                            if type(function) is dict:
                                _count(call, function.get("arguments"))
            reason = choice.get("finish_reason")
            if reason is not None and type(reason) is str:
                index = choice.get("index")
                self._reasons[index if type(index) is int else 0] = reason
        if self._usage is None:
            groq = obj.get("x_groq")
            if type(groq) is dict and type(groq.get("usage")) is dict:
                self._usage = groq["usage"]

    def usage(self) -> Usage | None:
        if self._reasons:
            self.call.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        return None if self._usage is None else from_openai_chat({"usage": self._usage})


class _ResponsesEvents(_StreamHandler):
    """Responses API events: text deltas counted, model and usage from the terminal event's response."""

    __slots__ = ("_final", "call")
    _WANTED = frozenset({"response.created", "response.output_text.delta", "response.function_call_arguments.delta",
                         "response.completed", "response.incomplete", "response.failed"})

    def __init__(self, call: Call) -> None:
        self.call = call
        self._final: Mapping[str, Any] | None = None

    def wants(self, event: str | None) -> bool:
        # Named events we do not need are not even parsed (output_item.done repeats the whole output).
        return event is None or event in self._WANTED

    def on_event(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
            _count(self.call, obj.get("delta"))
            return
        response = obj.get("response")
        if not isinstance(response, Mapping):
            return
        if kind == "response.created":
            self.call.set_response(response.get("model"), response.get("id"))
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self._final = response

    def usage(self) -> Usage | None:
        final = self._final
        if final is None:
            return None
        call = self.call
        call.set_response(final.get("model"), final.get("id"))
        status = final.get("status")
        if isinstance(status, str):
            call.finish_reasons = [status]
        usage = final.get("usage")
        return from_openai_responses(usage) if isinstance(usage, Mapping) else None


class _AnthropicEvents(_StreamHandler):
    """Messages stream: ``message_start``'s usage merged with the last, CUMULATIVE ``message_delta``'s."""

    __slots__ = ("_delta", "_start", "call")
    _WANTED = frozenset({"message_start", "content_block_delta", "message_delta"})

    def __init__(self, call: Call) -> None:
        self.call = call
        self._start: Any = None
        self._delta: Any = None

    def wants(self, event: str | None) -> bool:
        return event is None or event in self._WANTED

    def on_event(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        call = self.call
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, Mapping):
                _count(call, delta.get("text") or delta.get("thinking") or delta.get("partial_json"))
        elif kind == "message_delta":
            if isinstance(obj.get("usage"), Mapping):
                self._delta = obj["usage"]
            delta = obj.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, Mapping) else None
            if isinstance(reason, str):
                call.finish_reasons = [reason]
        elif kind == "message_start":
            message = obj.get("message")
            if isinstance(message, Mapping):
                call.set_response(message.get("model"), message.get("id"))
                self._start = message.get("usage")

    def usage(self) -> Usage | None:
        if self._delta is None:
            return None  # cut before message_delta: message_start's output count is not final; estimate
        return from_anthropic({"usage": merge_anthropic_stream_usage(self._start, self._delta)})
