"""Google GenAI instrumentor (``google-genai``: the Gemini API and Vertex AI).

Hook points: ``Models._generate_content`` / ``_generate_content_stream`` and their ``AsyncModels``
twins, one per HTTP request. The public ``generate_content`` may make several requests for one call
(automatic function calling), and each request is billed, so each gets its span. ``embed_content``
is wrapped as is. Provider: ``gcp.vertex_ai`` for a Vertex client, else ``gcp.gemini``.

Gemini reports thoughts outside ``candidatesTokenCount`` and tool-use prompt tokens outside
``promptTokenCount``; :func:`llmtally.usage.from_google_genai` adds both back. Stream chunks carry
cumulative usage, so the last chunk with counts is the call's usage.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import partial
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from llmtally import semconv as sc
from llmtally.estimate import heuristic_tokens
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation._request import request_numbers
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import server_of
from llmtally.instrumentation.streams import TracedAsyncStream, call_lazy
from llmtally.usage import Usage, _fields, _get, from_google_genai

_settings = Settings()


class GoogleGenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments ``google-genai``. Options of ``instrument()``: ``tracer_provider``, ``price_book``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("google-genai >= 1.0",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        try:
            import google.genai.models as models

            sync, async_ = models.Models, models.AsyncModels
        except Exception as exc:  # an SDK layout we do not know: leave it alone
            report_internal_error("google_genai.instrument", exc)
            return
        for cls, name, wrapper in ((sync, "_generate_content", _sync_generate),
                                   (sync, "_generate_content_stream", _sync_stream),
                                   (sync, "embed_content", _sync_embed),
                                   (async_, "_generate_content", _async_generate),
                                   (async_, "_generate_content_stream", _async_stream),
                                   (async_, "embed_content", _async_embed)):
            _settings.wrap(cls, name, wrapper, "google_genai.instrument")

    def _uninstrument(self, **kwargs: Any) -> None:
        _settings.unwrap_all()


# --- starting a call ------------------------------------------------------------------------------

_NUMBERS = (("max_output_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS), ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
            ("top_p", sc.GEN_AI_REQUEST_TOP_P))


def _start(instance: Any, kwargs: dict[str, Any], operation: str, stream: bool) -> Call | None:
    if not is_instrumentation_enabled():
        return None
    try:
        client = getattr(instance, "_api_client", None)
        vertex = bool(getattr(client, "vertexai", False))
        base = getattr(getattr(client, "_http_options", None), "base_url", None)
        host, port = server_of(str(base) if base else None)
        model = kwargs.get("model")
        contents = kwargs.get("contents")
        capture = capture_content_enabled()
        config = kwargs.get("config")
        attrs = request_numbers(partial(_get, config), _NUMBERS, {})
        if capture and contents is not None:
            attrs[sc.GEN_AI_INPUT_MESSAGES] = str(contents)[:100_000]
        return Call(_settings.tracer, provider=sc.Provider.GCP_VERTEX_AI if vertex else sc.Provider.GCP_GEMINI,
                    operation=operation, request_model=model if isinstance(model, str) else None,
                    server_address=host, server_port=port, streaming=stream, attributes=attrs,
                    price_book=_settings.price_book, estimate_input=lambda: _estimate(contents), capture=capture)
    except Exception as exc:
        report_internal_error("google_genai.start", exc)
        return None


def _texts(value: Any) -> list[str]:
    """Every text in ``contents`` in any accepted shape: str, parts, Content objects, dicts, lists."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _texts(item)]
    text = _get(value, "text")
    if isinstance(text, str):
        return [text]
    parts = _get(value, "parts")
    return _texts(parts) if parts is not None else []


def _estimate(contents: Any) -> int:
    return sum(heuristic_tokens(t) for t in _texts(contents))


# --- non-stream calls -----------------------------------------------------------------------------

def _sync_generate(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _start(instance, kwargs, sc.Operation.GENERATE_CONTENT, stream=False)
    if call is None:
        return wrapped(*args, **kwargs)
    result = call.invoke(wrapped, *args, **kwargs)
    _finish_response(call, result)
    return result


async def _async_generate(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> Any:
    call = _start(instance, kwargs, sc.Operation.GENERATE_CONTENT, stream=False)
    if call is None:
        return await wrapped(*args, **kwargs)
    result = await call.ainvoke(wrapped, *args, **kwargs)
    _finish_response(call, result)
    return result


def _finish_response(call: Call, response: Any) -> None:
    try:
        fields = _fields(response)
        call.set_response(fields.get("model_version"), fields.get("response_id"))
        reasons = _finish_reasons(fields.get("candidates"))
        if reasons:
            call.finish_reasons = reasons
        usage: Usage | None = None
        if _has_counts(fields.get("usage_metadata")):
            usage = from_google_genai(response)
        else:
            for text in _candidate_texts(fields.get("candidates")):
                call.add_output_text(text)
        call.finish(usage)
    except Exception as exc:
        report_internal_error("google_genai.result", exc)
        call.finish(None)


def _has_counts(metadata: Any) -> bool:
    m = _fields(metadata)
    return m.get("prompt_token_count") is not None or m.get("candidates_token_count") is not None


def _finish_reasons(candidates: Any) -> list[str]:
    reasons = []
    for candidate in candidates or ():
        reason = _fields(candidate).get("finish_reason")
        if reason is not None:
            reasons.append(str(getattr(reason, "name", reason)).lower())
    return reasons


def _candidate_texts(candidates: Any) -> list[str]:
    out = []
    for candidate in candidates or ():
        for part in _fields(_fields(candidate).get("content")).get("parts") or ():
            text = _fields(part).get("text")
            if isinstance(text, str):
                out.append(text)
    return out


# --- streams --------------------------------------------------------------------------------------

class _ChunkAccumulator:
    """GenerateContentResponse chunks: the last usage with counts (cumulative), text counted."""

    __slots__ = ("_first", "_usage", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._usage: Any = None
        self._first = True

    def on_item(self, chunk: Any) -> bool:
        call = self.call
        if self._first:
            self._first = False
            call.response_model = getattr(chunk, "model_version", None) or call.response_model
            call.response_id = getattr(chunk, "response_id", None) or call.response_id
        metadata = chunk.usage_metadata
        if metadata is not None and (metadata.prompt_token_count is not None
                                     or metadata.candidates_token_count is not None):
            self._usage = metadata
        for candidate in chunk.candidates or ():
            content = candidate.content
            for part in (content.parts if content is not None else None) or ():
                text = part.text
                if text:
                    if call.output_parts is None and text.isascii():
                        call.out_ascii += len(text)
                    else:
                        call.add_output_text(text)
            if candidate.finish_reason is not None:
                call.finish_reasons = [str(getattr(candidate.finish_reason, "name", candidate.finish_reason)).lower()]
        return True

    def usage(self) -> Usage | None:
        return None if self._usage is None else from_google_genai(self._usage)


def _sync_stream(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _start(instance, kwargs, sc.Operation.GENERATE_CONTENT, stream=True)
    if call is None:
        return wrapped(*args, **kwargs)
    # A lazy generator: the request is sent on first iteration, which runs with the call current.
    return call_lazy(_ChunkAccumulator(call), wrapped, args, kwargs)


async def _async_stream(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                        kwargs: dict[str, Any]) -> Any:
    call = _start(instance, kwargs, sc.Operation.GENERATE_CONTENT, stream=True)
    if call is None:
        return await wrapped(*args, **kwargs)
    result = await call.ainvoke(wrapped, *args, **kwargs)  # awaiting it sends the request: not lazy
    return TracedAsyncStream(result, _ChunkAccumulator(call))


# --- embeddings -----------------------------------------------------------------------------------

def _embed_usage(call: Call, response: Any) -> None:
    try:
        counts = [_fields(_fields(e).get("statistics")).get("token_count")
                  for e in _fields(response).get("embeddings") or ()]
        known = [c for c in counts if isinstance(c, (int, float))]
        # Vertex reports tokens per embedding; the Gemini API reports none: estimated from the input.
        call.finish(Usage.build(input_tokens=int(sum(known))) if known else None)
    except Exception as exc:
        report_internal_error("google_genai.embed", exc)
        call.finish(None)


def _sync_embed(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _start(instance, kwargs, sc.Operation.EMBEDDINGS, stream=False)
    if call is None:
        return wrapped(*args, **kwargs)
    result = call.invoke(wrapped, *args, **kwargs)
    _embed_usage(call, result)
    return result


async def _async_embed(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                       kwargs: dict[str, Any]) -> Any:
    call = _start(instance, kwargs, sc.Operation.EMBEDDINGS, stream=False)
    if call is None:
        return await wrapped(*args, **kwargs)
    result = await call.ainvoke(wrapped, *args, **kwargs)
    _embed_usage(call, result)
    return result
