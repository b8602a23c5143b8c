"""Anthropic's Messages wire format for the fake provider: ``POST /v1/messages`` (JSON and its SSE event
stream), ``POST /v1/messages/count_tokens``, and Anthropic error bodies.

What it covers
--------------
* Shapes follow the ``anthropic`` SDK's types (``Message``, ``Usage``, ``CacheCreation``,
  ``MessageDeltaUsage``, the ``Raw*Event`` stream events) and the real recorded streams in the shared
  fixtures. Paths match ``/v1/messages`` under any prefix (so ``anthropic.Anthropic(base_url=fake.url)``
  and gateways that mount the API under a path both work); Bedrock and Vertex paths are not served.
* Usage is rendered in Anthropic's semantics from the scenario's semconv counts: ``input_tokens``
  EXCLUDES cache reads and writes (``input - cache_read - cache_write``), ``cache_read_input_tokens``,
  ``cache_creation_input_tokens`` and ``cache_creation`` (``ephemeral_1h_input_tokens`` =
  ``cache_write_1h``, ``ephemeral_5m_input_tokens`` = the rest of ``cache_write``), ``output_tokens``
  includes thinking, which is also given as ``output_tokens_details.thinking_tokens`` when non-zero.
* Streams send ``message_start`` (usage with the input counts and ``output_tokens: 1``),
  ``content_block_start``, a ``ping``, the deltas, ``content_block_stop``, ``message_delta`` whose usage
  carries the CUMULATIVE totals (as real Anthropic streams do: adding ``message_start``'s output count
  double-counts), and ``message_stop``. With reasoning > 0 a ``thinking`` block (``thinking_delta``
  events and a ``signature_delta``) comes before the text block; with ``tools`` the answer is a
  ``tool_use`` block (``input_json_delta`` events in a stream) and ``stop_reason`` is ``tool_use``.
* ``no-usage``: the ``usage`` object is left out everywhere (the JSON message, ``message_start``'s
  message and ``message_delta``). The real API never does this; it stands for Anthropic-compatible
  gateways that drop usage. Raw iteration of ``messages.create(stream=True)`` copes; the SDK's
  ``messages.stream()`` accumulator does not (it reads ``event.usage.output_tokens``).
* ``malformed-usage``: counts as strings, negatives and nulls, and ``cache_creation`` as a string.
* ``cost`` is OpenAI-only (OpenRouter style) and is ignored here.
* Scenario errors use Anthropic's body ``{"type": "error", "error": {"type": ..., "message": ...},
  "request_id": ...}`` so the SDK raises its own classes (``RateLimitError``, ``InternalServerError``,
  ``BadRequestError``, ...).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

from llmtally.testing.scenario import FakeUsage, Scenario
from llmtally.testing.server import FakeRequest, JsonReply, Reply, Route, StreamReply, sse

_ids = itertools.count(1)
_PREFIX = r"(?:/[^/]+)*?"
_TOOL_NAME = "get_weather"
_TOOL_INPUT = '{"city": "Paris"}'
_THINKING = "Let me think about this step by step before answering."
_SIGNATURE = "ZmFrZS1zaWduYXR1cmUtZnJvbS1sbG10YWxseQ=="

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}


def _id(prefix: str) -> str:
    return f"{prefix}_fake{next(_ids):06d}"


def error_reply(status: int, message: str) -> JsonReply:
    """Anthropic's error body (``anthropic.types.ErrorResponse``) and its ``request-id`` header."""
    request_id = _id("req")
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return JsonReply({"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id},
                     status=status, headers={"request-id": request_id})


# --- usage in Anthropic's semantics (input EXCLUDES cache reads/writes; output includes thinking) -----

def message_usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    """The ``usage`` of a ``Message`` (the JSON reply and ``message_start``'s message, where the stream
    reports ``output_tokens: 1``)."""
    if scenario.has("no-usage"):
        return None
    if scenario.has("malformed-usage"):
        return {"input_tokens": str(u.uncached_input), "output_tokens": -5, "cache_read_input_tokens": None,
                "cache_creation_input_tokens": -1, "cache_creation": "n/a"}
    usage: dict[str, Any] = {
        "input_tokens": u.uncached_input,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": u.cache_write - u.cache_write_1h,
                           "ephemeral_1h_input_tokens": u.cache_write_1h},
        "output_tokens": u.output,
        "service_tier": "standard",
    }
    if u.reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": u.reasoning}
    return usage


def delta_usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    """The ``usage`` of ``message_delta``: cumulative totals for the whole message."""
    if scenario.has("no-usage"):
        return None
    if scenario.has("malformed-usage"):
        return {"output_tokens": str(u.output), "input_tokens": -1, "cache_read_input_tokens": None}
    usage: dict[str, Any] = {"input_tokens": u.uncached_input, "cache_creation_input_tokens": u.cache_write,
                             "cache_read_input_tokens": u.cache_read, "output_tokens": u.output}
    if u.reasoning:
        usage["output_tokens_details"] = {"thinking_tokens": u.reasoning}
    return usage


def _stream_requested(request: FakeRequest) -> bool:
    return isinstance(request.json, dict) and request.json.get("stream") is True


def _blocks(scenario: Scenario) -> list[dict[str, Any]]:
    """The final content blocks of the answer."""
    blocks: list[dict[str, Any]] = []
    if scenario.usage.reasoning > 0:
        blocks.append({"type": "thinking", "thinking": _THINKING, "signature": _SIGNATURE})
    if scenario.has("tools"):
        blocks.append({"type": "tool_use", "id": _id("toolu"), "name": _TOOL_NAME, "input": json.loads(_TOOL_INPUT),
                       "caller": {"type": "direct"}})
    else:
        blocks.append({"type": "text", "text": scenario.text})
    return blocks


def _message(scenario: Scenario, mid: str, content: list[Any], stop_reason: str | None,
             usage: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": mid, "type": "message", "role": "assistant", "model": scenario.model,
                            "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                            "stop_details": None}
    if usage is not None:
        body["usage"] = usage
    return body


# --- /v1/messages ----------------------------------------------------------------------------------

def messages(request: FakeRequest, scenario: Scenario) -> Reply:
    mid = _id("msg")
    blocks = _blocks(scenario)
    stop_reason = "tool_use" if scenario.has("tools") else "end_turn"
    if not _stream_requested(request):
        return JsonReply(_message(scenario, mid, blocks, stop_reason, message_usage(scenario.usage, scenario)),
                         headers={"request-id": _id("req")})
    return StreamReply(_message_stream(scenario, mid, blocks, stop_reason), headers={"request-id": _id("req")})


def _message_stream(scenario: Scenario, mid: str, blocks: list[dict[str, Any]],
                    stop_reason: str) -> Iterator[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return sse({"type": kind, **fields}, event=kind)

    start_usage = message_usage(scenario.usage, scenario)
    if start_usage is not None and not scenario.has("malformed-usage"):
        start_usage = {**start_usage, "output_tokens": 1}
        start_usage.pop("output_tokens_details", None)
    yield event("message_start", message=_message(scenario, mid, [], None, start_usage))
    for index, block in enumerate(blocks):
        kind = block["type"]
        if kind == "thinking":
            yield event("content_block_start", index=index,
                        content_block={"type": "thinking", "thinking": "", "signature": ""})
        elif kind == "tool_use":
            yield event("content_block_start", index=index, content_block={**block, "input": {}})
        else:
            yield event("content_block_start", index=index, content_block={"type": "text", "text": ""})
        if index == 0:
            yield sse({"type": "ping"}, event="ping")
        if kind == "thinking":
            half = len(_THINKING) // 2
            for piece in (_THINKING[:half], _THINKING[half:]):
                yield event("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": piece})
            yield event("content_block_delta", index=index, delta={"type": "signature_delta", "signature": _SIGNATURE})
        elif kind == "tool_use":
            half = len(_TOOL_INPUT) // 2
            for piece in ("", _TOOL_INPUT[:half], _TOOL_INPUT[half:]):
                yield event("content_block_delta", index=index,
                            delta={"type": "input_json_delta", "partial_json": piece})
        else:
            for piece in scenario.text_chunks():
                yield event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
        yield event("content_block_stop", index=index)
    fields: dict[str, Any] = {"delta": {"stop_reason": stop_reason, "stop_sequence": None, "stop_details": None}}
    usage = delta_usage(scenario.usage, scenario)
    if usage is not None:
        fields["usage"] = usage
    yield event("message_delta", **fields)
    yield event("message_stop")


# --- /v1/messages/count_tokens (not a billed call) -------------------------------------------------

def count_tokens(request: FakeRequest, scenario: Scenario) -> Reply:
    return JsonReply({"input_tokens": scenario.usage.input}, headers={"request-id": _id("req")})


def _route(suffix: str, handler: Any) -> Route:
    return Route("POST", re.compile(_PREFIX + suffix), handler, error_reply)


ROUTES = [
    _route("/v1/messages/count_tokens", count_tokens),  # before /v1/messages
    _route("/v1/messages", messages),
]
