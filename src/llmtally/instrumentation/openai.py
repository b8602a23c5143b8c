"""OpenAI instrumentor: one span with tokens and cost per inference call of the ``openai`` SDK.

Hook point: the SDK's base client ``request()`` (sync and async), the single place every surface goes
through: ``chat.completions.create/parse/stream``, ``responses.create/parse/stream``,
``embeddings.create``, ``completions.create``, ``images.generate``, with or without
``with_raw_response`` / ``with_streaming_response``. Only POSTs to those endpoints are traced; every
other request passes straight through. The span covers the whole SDK call, retries included.

What the caller gets back is the SDK's own object, or a transparent proxy of it for streams and raw
responses (:mod:`llmtally.instrumentation.streams`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.estimate import estimate_prompt_tokens, heuristic_tokens
from llmtally.instrumentation import _stainless as stainless
from llmtally.instrumentation._request import request_number, request_numbers
from llmtally.instrumentation._stainless import Plan
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import ACCEPTS_STREAM_USAGE, provider_for_host
from llmtally.instrumentation.streams import Accumulator
from llmtally.usage import (
    Usage,
    _fields,
    _get,
    from_openai_chat,
    from_openai_embeddings,
    from_openai_images,
    from_openai_responses,
)

ENV_INJECT_STREAM_USAGE = "LLMTALLY_INJECT_STREAM_USAGE"

CHAT, RESPONSES, COMPLETIONS, EMBEDDINGS, IMAGES = "chat", "responses", "completions", "embeddings", "images"
# endpoint path suffix -> (kind, gen_ai.operation.name, openai.api.type)
_ENDPOINTS: tuple[tuple[str, str, str, str | None], ...] = (
    ("/chat/completions", CHAT, sc.Operation.CHAT, sc.OpenAIApiType.CHAT_COMPLETIONS),
    ("/responses", RESPONSES, sc.Operation.CHAT, sc.OpenAIApiType.RESPONSES),
    ("/completions", COMPLETIONS, sc.Operation.TEXT_COMPLETION, None),
    ("/embeddings", EMBEDDINGS, sc.Operation.EMBEDDINGS, None),
    ("/images/generations", IMAGES, sc.Operation.IMAGE_GENERATION, None),
)


class _Settings(Settings):
    inject_stream_usage: bool = False
    inject_hosts: frozenset[str] = ACCEPTS_STREAM_USAGE


_settings = _Settings()


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments the ``openai`` SDK.

    Options of ``instrument()``: ``tracer_provider``; ``price_book`` (a :class:`PriceBook`, default:
    the bundled catalog plus ``LLMTALLY_PRICE_FILES``); ``inject_stream_usage`` (default False, or
    ``LLMTALLY_INJECT_STREAM_USAGE=true``): ask hosts known to accept it for
    ``stream_options.include_usage`` on streams whose caller did not, and hide the extra usage-only
    chunk from that caller; ``inject_stream_usage_hosts``: more hosts to do that for.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("openai >= 1.40",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        inject = kwargs.get("inject_stream_usage")
        if inject is None:
            inject = os.environ.get(ENV_INJECT_STREAM_USAGE, "").strip().lower() in ("1", "true", "yes", "on")
        _settings.inject_stream_usage = bool(inject)
        _settings.inject_hosts = ACCEPTS_STREAM_USAGE | frozenset(kwargs.get("inject_stream_usage_hosts") or ())
        stainless.instrument("openai", _ADAPTER)

    def _uninstrument(self, **kwargs: Any) -> None:
        import openai._base_client as base

        stainless.uninstrument(base)


# --- the adapter for the shared Stainless hook ---------------------------------------------------

class _OpenAIAdapter(stainless.Adapter):
    name = "openai"

    def plan(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
        return _plan(instance, args, kwargs)

    def finish_from_object(self, plan: Plan, obj: Any) -> None:
        _finish_from_object(plan, obj)

    def accumulator(self, plan: Plan) -> Accumulator:
        return _accumulator(plan)


_ADAPTER = _OpenAIAdapter()


_Endpoint = tuple[str, str, "str | None"]


def _match_endpoint(url: str) -> _Endpoint | None:
    """(kind, operation, api type) of a request path."""
    path = url.split("?", 1)[0].rstrip("/")
    for suffix, kind, operation, api_type in _ENDPOINTS:
        if path.endswith(suffix):
            if kind == COMPLETIONS and path.endswith("/chat/completions"):
                continue
            return kind, operation, api_type
    return None


_endpoint = stainless.path_matcher(_match_endpoint)


def _plan(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
    request = stainless.request_of(instance, args, kwargs, _endpoint)
    if request is None:
        return None
    options, (kind, operation, api_type), body, model, stream, host, port = request
    provider = _provider(instance, host)
    capture = capture_content_enabled()
    attrs = _request_attributes(kind, body, api_type, capture)
    injected = False
    if (stream and kind in (CHAT, COMPLETIONS) and _settings.inject_stream_usage and host in _settings.inject_hosts
            and not _include_usage(body)):
        options = options.model_copy()
        options.json_data = {**body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}
        if len(args) > 1:
            args = (args[0], options, *args[2:])
        else:
            kwargs = {**kwargs, "options": options}
        injected = True
    call = Call(_settings.tracer, provider=provider, operation=operation, request_model=model, server_address=host,
                server_port=port, streaming=stream, attributes=attrs, price_book=_settings.price_book,
                estimate_input=partial(_estimate_input, kind, body, model), capture=capture)
    service_tier = body.get("service_tier")
    if isinstance(service_tier, str):  # "auto"/"default": the engine prices them as standard
        call.service_tier = service_tier
    return Plan(call, kind, injected, args, kwargs)


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and options.get("include_usage") is True


def _provider(instance: Any, host: str | None) -> str:
    if type(instance).__name__ in ("AzureOpenAI", "AsyncAzureOpenAI"):
        return sc.Provider.AZURE_OPENAI
    return provider_for_host(host)


def _request_attributes(kind: str, body: Mapping[str, Any], api_type: str | None,
                        capture: bool) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {sc.OPENAI_API_TYPE: api_type} if api_type else {}
    if capture:
        content = body.get("messages") or body.get("input") or body.get("prompt")
        if content is not None:
            attrs[sc.GEN_AI_INPUT_MESSAGES] = json.dumps(content, default=str)[:100_000]
    if _REQUEST_PARAMETERS.isdisjoint(body):  # most requests set none: one C-level pass over the keys
        return attrs
    max_tokens = request_number(sc.GEN_AI_REQUEST_MAX_TOKENS, body.get("max_completion_tokens")
                                or body.get("max_tokens") or body.get("max_output_tokens"))
    if max_tokens is not None:
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    request_numbers(body.get, _NUMBERS, attrs)
    stop = body.get("stop")
    if isinstance(stop, str):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    n = body.get("n")
    if isinstance(n, int) and n != 1:
        attrs[sc.GEN_AI_REQUEST_CHOICE_COUNT] = n
    tier = body.get("service_tier")
    if isinstance(tier, str):
        attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = tier
    fmt = body.get("encoding_format")
    if kind == EMBEDDINGS and isinstance(fmt, str):
        attrs[sc.GEN_AI_REQUEST_ENCODING_FORMATS] = [fmt]
    response_format = body.get("response_format")
    text_format = _get(body.get("text"), "format")
    fmt_type = _get(response_format, "type") or _get(text_format, "type")
    if isinstance(fmt_type, str):
        attrs[sc.GEN_AI_OUTPUT_TYPE] = "json" if fmt_type.startswith("json") else fmt_type
    return attrs


_NUMBERS = (("temperature", sc.GEN_AI_REQUEST_TEMPERATURE), ("top_p", sc.GEN_AI_REQUEST_TOP_P),
            ("frequency_penalty", sc.GEN_AI_REQUEST_FREQUENCY_PENALTY),
            ("presence_penalty", sc.GEN_AI_REQUEST_PRESENCE_PENALTY), ("seed", sc.GEN_AI_REQUEST_SEED))
# Every request body key _request_attributes reads.
_REQUEST_PARAMETERS = frozenset({
    "max_completion_tokens", "max_tokens", "max_output_tokens", "temperature", "top_p", "frequency_penalty",
    "presence_penalty", "seed", "stop", "n", "service_tier", "encoding_format", "response_format", "text"})


def _estimate_input(kind: str, body: Mapping[str, Any], model: str | None) -> int:
    """Input tokens estimated from the request, for calls whose provider reported no usage."""
    if kind == CHAT:
        return estimate_prompt_tokens(messages=body.get("messages"), model=model)
    if kind == RESPONSES:
        source = body.get("input")
        total = estimate_prompt_tokens(prompt=body.get("instructions") or None, model=model)
        if isinstance(source, str):
            return total + estimate_prompt_tokens(prompt=source, model=model)
        return total + estimate_prompt_tokens(messages=source, model=model)
    source = body.get("prompt") if kind in (COMPLETIONS, IMAGES) else body.get("input")
    texts = [source] if isinstance(source, str) else source if isinstance(source, list) else []
    return sum(heuristic_tokens(t) if isinstance(t, str) else len(t) if isinstance(t, list) else 0 for t in texts)


# --- results --------------------------------------------------------------------------------------

def _finish_from_object(plan: Plan, obj: Any) -> None:
    call = plan.call
    if call.done:  # e.g. parse() after the raw body was already accounted for
        return
    kind = plan.kind
    fields = _fields(obj)
    call.set_response(fields.get("model"), fields.get("id"))
    tier = fields.get("service_tier")
    if isinstance(tier, str):
        call.response_attributes[sc.OPENAI_RESPONSE_SERVICE_TIER] = tier
        # The tier that served the call prices it: a priority request downgraded to standard comes back as
        # "default" and is billed at the standard rate (the engine prices standard tiers as no tier).
        call.service_tier = tier
    usage: Usage | None
    if kind == IMAGES:
        usage = from_openai_images(obj)
    elif fields.get("usage") is None:
        usage = None
        _count_output(kind, obj, call)  # for the estimate
    elif kind == RESPONSES:
        usage = from_openai_responses(fields)
    elif kind == EMBEDDINGS:
        usage = from_openai_embeddings(fields)
    else:
        usage = from_openai_chat(fields)  # the field view already taken: not a second pass over the model
    if kind in (CHAT, COMPLETIONS):
        reasons = [r for c in fields.get("choices") or () if isinstance(r := _fields(c).get("finish_reason"), str)]
        if reasons:
            call.finish_reasons = reasons
    elif kind == RESPONSES:
        status = fields.get("status")
        if isinstance(status, str):
            call.finish_reasons = [status]
    if call.capture and kind in (CHAT, COMPLETIONS, RESPONSES) and not call.output_parts:
        _count_output(kind, obj, call)
    call.finish(usage)


def _count_output(kind: str, obj: Any, call: Call) -> None:
    if kind == CHAT:
        for choice in _get(obj, "choices") or ():
            content = _get(_get(choice, "message"), "content")
            if isinstance(content, str):
                call.add_output_text(content)
    elif kind == COMPLETIONS:
        for choice in _get(obj, "choices") or ():
            text = _get(choice, "text")
            if isinstance(text, str):
                call.add_output_text(text)
    elif kind == RESPONSES:
        for item in _get(obj, "output") or ():
            for part in _get(item, "content") or ():
                text = _get(part, "text")
                if isinstance(text, str):
                    call.add_output_text(text)


# --- stream accumulators --------------------------------------------------------------------------

def _accumulator(plan: Plan) -> _ChatAccumulator | _ResponsesAccumulator:
    if plan.kind == RESPONSES:
        return _ResponsesAccumulator(plan.call)
    return _ChatAccumulator(plan.call, plan.injected, plan.kind == COMPLETIONS)


class _ChatAccumulator:
    """Chat completion (and legacy completion) chunks: O(1) work per chunk, no text kept."""

    __slots__ = ("_first", "_usage", "call", "finish_reasons", "injected", "legacy")

    def __init__(self, call: Call, injected: bool, legacy: bool) -> None:
        self.call, self.injected, self.legacy = call, injected, legacy
        self._first = True
        self._usage: Any = None
        self.finish_reasons: dict[int, str] = {}

    def on_item(self, chunk: Any) -> bool:
        call = self.call
        delta = None
        if self._first:
            self._first = False
            call.response_model = getattr(chunk, "model", None) or call.response_model
            call.response_id = getattr(chunk, "id", None) or call.response_id
        usage = getattr(chunk, "usage", None)
        choices = chunk.choices
        if usage is not None:
            self._usage = usage
            if self.injected and not choices:
                return False  # the usage-only chunk the caller did not ask for
        for choice in choices:
            content = choice.text if self.legacy else (delta := choice.delta) and delta.content
            if content:
                if call.output_parts is None and content.isascii():
                    call.out_ascii += len(content)  # inline: the per-chunk path of every stream
                else:
                    call.add_output_text(content)
            if not self.legacy and delta is not None:
                tool_calls = delta.tool_calls
                if tool_calls:
                    for tool_call in tool_calls:
                        arguments = tool_call.function.arguments if tool_call.function else None
                        if arguments:
                            call.add_output_text(arguments)
            reason = choice.finish_reason
            if reason:
                self.finish_reasons[choice.index] = reason
                if self._usage is None:  # Groq reports stream usage under x_groq
                    extra = getattr(chunk, "model_extra", None) or {}
                    groq_usage = _get(extra.get("x_groq"), "usage")
                    if groq_usage is not None:
                        self._usage = groq_usage
        return True

    def usage(self) -> Usage | None:
        if self.finish_reasons:
            self.call.finish_reasons = [self.finish_reasons[i] for i in sorted(self.finish_reasons)]
        return None if self._usage is None else from_openai_chat(self._usage)


class _ResponsesAccumulator:
    """Responses API events: text deltas counted, usage from the terminal event."""

    __slots__ = ("_final", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._final: Any = None

    def on_item(self, event: Any) -> bool:
        call = self.call
        kind = getattr(event, "type", None)
        if kind == "response.output_text.delta" or kind == "response.function_call_arguments.delta":
            delta = event.delta
            if delta:
                call.add_output_text(delta)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self._final = event.response
        elif kind == "response.created":
            response = event.response
            call.response_model = getattr(response, "model", None)
            call.response_id = getattr(response, "id", None)
        return True

    def usage(self) -> Usage | None:
        final = self._final
        if final is None:
            return None
        call = self.call
        call.response_model = getattr(final, "model", None) or call.response_model
        status = getattr(final, "status", None)
        if isinstance(status, str):
            call.finish_reasons = [status]
        usage = getattr(final, "usage", None)
        return None if usage is None else from_openai_responses(usage)
