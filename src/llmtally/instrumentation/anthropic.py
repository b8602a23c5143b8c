"""Anthropic instrumentor: one span with tokens and cost per ``messages`` call of the ``anthropic`` SDK.

Same hook as OpenAI (:mod:`._stainless`: the base client's ``request()``), so ``messages.create`` (JSON
and ``stream=True``), the ``messages.stream`` helper (``text_stream``, ``get_final_message``), raw and
streaming responses, sync and async are all covered. ``count_tokens`` is not a billed call and is not
traced. The Bedrock and Vertex Anthropic clients report ``aws.bedrock`` and ``gcp.vertex_ai``.

The SDK's own tracing (anthropic >= 2, scope ``com.anthropic.sdk.python``, on by default, switched off
with ``ANTHROPIC_OPEN_TELEMETRY=false``): its call span starts inside ``request()``, so it nests under
llmtally's span. Both stay in the trace, and the usage processor counts the call once (a peer span that
is a child of an llmtally span is the same call).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.estimate import estimate_prompt_tokens, message_texts
from llmtally.instrumentation import _stainless as stainless
from llmtally.instrumentation._request import request_numbers
from llmtally.instrumentation._stainless import Plan
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import provider_for_host
from llmtally.instrumentation.streams import Accumulator
from llmtally.usage import Usage, _fields, from_anthropic, merge_anthropic_stream_usage

MESSAGES = "messages"


_settings = Settings()


class AnthropicInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments the ``anthropic`` SDK. Options of ``instrument()``: ``tracer_provider``, ``price_book``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("anthropic >= 0.40",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        stainless.instrument("anthropic", _ADAPTER)

    def _uninstrument(self, **kwargs: Any) -> None:
        import anthropic._base_client as base

        stainless.uninstrument(base)


class _AnthropicAdapter(stainless.Adapter):
    name = "anthropic"

    def plan(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
        return _plan(instance, args, kwargs)

    def finish_from_object(self, plan: Plan, obj: Any) -> None:
        _finish_from_object(plan, obj)

    def accumulator(self, plan: Plan) -> Accumulator:
        return _MessageAccumulator(plan.call)


_ADAPTER = _AnthropicAdapter()

_PROVIDERS = {"AnthropicBedrock": sc.Provider.AWS_BEDROCK, "AsyncAnthropicBedrock": sc.Provider.AWS_BEDROCK,
              "AnthropicVertex": sc.Provider.GCP_VERTEX_AI, "AsyncAnthropicVertex": sc.Provider.GCP_VERTEX_AI}


def _provider(instance: Any, host: str | None) -> str:
    """The Bedrock and Vertex clients are their platforms; the plain client goes by its host."""
    return _PROVIDERS.get(type(instance).__name__) or provider_for_host(host, default=sc.Provider.ANTHROPIC)


def _match_messages(url: str) -> bool | None:
    """True for the messages endpoint; count_tokens and the rest are not billed inference, not traced."""
    return url.split("?", 1)[0].rstrip("/").endswith("/messages") or None


_endpoint = stainless.path_matcher(_match_messages)


def _plan(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan | None:
    request = stainless.request_of(instance, args, kwargs, _endpoint)
    if request is None:
        return None
    _, _, body, model, stream, host, port = request
    provider = _provider(instance, host)
    capture = capture_content_enabled()
    call = Call(_settings.tracer, provider=provider, operation=sc.Operation.CHAT, request_model=model,
                server_address=host, server_port=port, streaming=stream,
                attributes=_request_attributes(body, capture), price_book=_settings.price_book,
                estimate_input=partial(_estimate_input, body, model), capture=capture)
    return Plan(call, MESSAGES, False, args, kwargs)


_NUMBERS = (("max_tokens", sc.GEN_AI_REQUEST_MAX_TOKENS), ("temperature", sc.GEN_AI_REQUEST_TEMPERATURE),
            ("top_p", sc.GEN_AI_REQUEST_TOP_P), ("top_k", sc.GEN_AI_REQUEST_TOP_K))


def _request_attributes(body: Mapping[str, Any], capture: bool) -> dict[str, AttributeValue]:
    attrs = request_numbers(body.get, _NUMBERS, {})
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        attrs[sc.GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    if capture:
        import json

        attrs[sc.GEN_AI_INPUT_MESSAGES] = json.dumps(body.get("messages"), default=str)[:100_000]
    return attrs


def _estimate_input(body: Mapping[str, Any], model: str | None) -> int:
    system = body.get("system")
    if isinstance(system, list):  # system as content blocks
        system = "".join(message_texts([{"content": system}]))
    return estimate_prompt_tokens(messages=body.get("messages"), prompt=system if isinstance(system, str) else None,
                                  model=model)


def _finish_from_object(plan: Plan, obj: Any) -> None:
    call = plan.call
    if call.done:
        return
    fields = _fields(obj)
    call.set_response(fields.get("model"), fields.get("id"))
    reason = fields.get("stop_reason")
    if isinstance(reason, str):
        call.finish_reasons = [reason]
    usage: Usage | None = None
    if fields.get("usage") is not None:
        usage = from_anthropic(fields)  # the field view already taken: not a second pass over the model
    else:
        for block in fields.get("content") or ():
            text = _fields(block).get("text")
            if isinstance(text, str):
                call.add_output_text(text)
    call.finish(usage)


class _MessageAccumulator:
    """Raw message stream events: usage from message_start merged with the last (cumulative)
    message_delta; text, thinking and tool-input deltas counted for the estimate."""

    __slots__ = ("_delta_usage", "_start_usage", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._start_usage: Any = None
        self._delta_usage: Any = None

    def on_item(self, event: Any) -> bool:
        call = self.call
        kind = event.type
        if kind == "content_block_delta":
            delta = event.delta
            text = getattr(delta, "text", None) or getattr(delta, "thinking", None) \
                or getattr(delta, "partial_json", None)
            if text:
                if call.output_parts is None and text.isascii():
                    call.out_ascii += len(text)
                else:
                    call.add_output_text(text)
        elif kind == "message_delta":
            if event.usage is not None:
                self._delta_usage = event.usage
            reason = getattr(event.delta, "stop_reason", None)
            if reason:
                call.finish_reasons = [reason]
        elif kind == "message_start":
            message = event.message
            call.response_model = getattr(message, "model", None)
            call.response_id = getattr(message, "id", None)
            self._start_usage = getattr(message, "usage", None)
        return True

    def usage(self) -> Usage | None:
        if self._delta_usage is None:
            return None  # cut before message_delta: message_start's output count is not final; estimate
        return from_anthropic({"usage": merge_anthropic_stream_usage(self._start_usage, self._delta_usage)})


_ENV_SDK_TRACING = "ANTHROPIC_OPEN_TELEMETRY"


def sdk_tracing_enabled() -> bool:
    """Whether anthropic's own tracing is on for clients built from the environment (its default)."""
    return os.environ.get(_ENV_SDK_TRACING, "").lower() != "false"
