"""Cohere's wire format for the fake provider: ``POST /v2/chat`` (JSON, or SSE with ``"stream": true``),
``POST /v2/embed``, ``POST /v1/chat`` (JSON, or newline-delimited JSON with ``"stream": true``), and
Cohere's error body.

What it covers
--------------
* Shapes follow the ``cohere`` SDK's types (``V2ChatResponse``, the ``V2ChatStreamResponse`` events,
  ``EmbedByTypeResponse``, ``NonStreamedChatResponse``, the v1 ``StreamedChatResponse`` events) and the
  real recorded responses in the shared fixtures. Paths match under any prefix, so
  ``cohere.ClientV2(base_url=fake.url)`` (the SDK appends ``/v2/chat``) and gateways that mount the API
  under a path both work.
* v2 streams send ``message-start``, ``content-start``, the ``content-delta`` events, ``content-end``,
  ``message-end`` (whose ``delta.usage`` is the call's usage) and a final ``data: [DONE]``, each frame
  with an ``event:`` line as the real API does. v1 streams are NDJSON (``application/stream+json``):
  ``stream-start``, ``text-generation`` events, and ``stream-end`` whose ``response.meta`` carries usage.
* Usage is rendered in Cohere's semantics from the scenario's semconv counts:
  ``tokens`` = {``input_tokens``: input, ``output_tokens``: output} (everything the model saw and
  produced, cached tokens included), ``cached_tokens`` = cache_read when it is non-zero, and
  ``billed_units`` = {``input_tokens``: input - cache_read, ``output_tokens``: output}. That billing rule
  is this fake's simple model (cached prompt tokens are not billed); the real API's billed input is
  its own business (recorded payloads bill e.g. 12 of 212 input tokens with 208 cached) and is exactly
  why llmtally prices ``billed_units``, never ``tokens``. Cohere has no cache-write or reasoning
  counts: cache writes are ordinary (billed) input and reasoning is part of ``output_tokens``. In v2
  usage sits in ``usage``, in v1 in ``meta`` (beside ``api_version``). Embeddings report only
  ``meta.billed_units.input_tokens`` (= input), as the real API does.
* ``no-usage``: ``usage`` (v2) / the counts in ``meta`` (v1, embed) are left out. The real API always
  reports them; this stands for gateways that drop them.
* ``malformed-usage``: counts as strings, negatives and nulls.
* ``tools``: a v2 answer with a ``tool_plan`` and a ``get_weather`` tool call (``tool-plan-delta`` and
  ``tool-call-start``/``-delta``/``-end`` events in a stream), finish reason ``TOOL_CALL``; a v1 answer
  with ``tool_calls``.
* ``cost`` is OpenAI-only (OpenRouter style) and is ignored here.
* Scenario errors use Cohere's body ``{"id": ..., "message": ...}``; the SDK raises its own classes by
  status (``BadRequestError``, ``TooManyRequestsError``, ``InternalServerError``, ...).
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from llmtally.testing.scenario import FakeUsage, Scenario
from llmtally.testing.server import FakeRequest, JsonReply, Reply, Route, StreamReply, sse

_ids = itertools.count(1)
_PREFIX = r"(?:/[^/]+)*?"
_TOOL_NAME = "get_weather"
_TOOL_ARGUMENTS = '{"city": "Paris"}'
_TOOL_PLAN = "I will look up the weather in Paris."
_VECTOR = [0.0, 0.25, -0.5, 1.0]


def _id() -> str:
    """A UUID-shaped id, as Cohere's are; deterministic per process."""
    return str(uuid.UUID(int=next(_ids)))


def error_reply(status: int, message: str) -> JsonReply:
    """Cohere's error body (the SDK picks its exception class from the status code)."""
    return JsonReply({"id": _id(), "message": message}, status=status)


# --- usage in Cohere's semantics ----------------------------------------------------------------------

def usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    """``Usage`` (v2) / the counts of ``ApiMeta`` (v1): ``tokens``, ``billed_units``, ``cached_tokens``."""
    if scenario.has("no-usage"):
        return None
    if scenario.has("malformed-usage"):
        return {"billed_units": {"input_tokens": str(u.input - u.cache_read), "output_tokens": -3},
                "tokens": {"input_tokens": str(u.input), "output_tokens": None}, "cached_tokens": -1}
    out: dict[str, Any] = {
        "billed_units": {"input_tokens": u.input - u.cache_read, "output_tokens": u.output},
        "tokens": {"input_tokens": u.input, "output_tokens": u.output},
    }
    if u.cache_read:
        out["cached_tokens"] = u.cache_read
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_stream(request: FakeRequest) -> bool:
    return isinstance(request.json, dict) and request.json.get("stream") is True


# --- v2 chat --------------------------------------------------------------------------------------------

def _v2_tool_call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": _TOOL_NAME, "arguments": _TOOL_ARGUMENTS}}


def chat_v2(request: FakeRequest, scenario: Scenario) -> Reply:
    rid = _id()
    tools = scenario.has("tools")
    finish = "TOOL_CALL" if tools else "COMPLETE"
    u = usage(scenario.usage, scenario)
    if not _is_stream(request):
        message: dict[str, Any] = {"role": "assistant"}
        if tools:
            message["tool_plan"] = _TOOL_PLAN
            message["tool_calls"] = [_v2_tool_call(f"{_TOOL_NAME}_{rid[-8:]}")]
        else:
            message["content"] = [{"type": "text", "text": scenario.text}]
        body: dict[str, Any] = {"id": rid, "message": message, "finish_reason": finish}
        if u is not None:
            body["usage"] = u
        return JsonReply(body)

    def event(data: dict[str, Any]) -> bytes:
        return sse(data, event=data["type"])

    def frames() -> Iterator[bytes]:
        yield event({"id": rid, "type": "message-start",
                     "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [],
                                           "citations": []}}})
        if tools:
            for piece in _split(_TOOL_PLAN, scenario.chunks):
                yield event({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
            call = _v2_tool_call(f"{_TOOL_NAME}_{rid[-8:]}")
            call["function"] = {"name": _TOOL_NAME, "arguments": ""}
            yield event({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": call}}})
            for piece in _split(_TOOL_ARGUMENTS, scenario.chunks):
                yield event({"type": "tool-call-delta", "index": 0,
                             "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}})
            yield event({"type": "tool-call-end", "index": 0})
        else:
            yield event({"type": "content-start", "index": 0,
                         "delta": {"message": {"content": {"type": "text", "text": ""}}}})
            for piece in scenario.text_chunks():
                yield event({"type": "content-delta", "index": 0,
                             "delta": {"message": {"content": {"text": piece}}}})
            yield event({"type": "content-end", "index": 0})
        end: dict[str, Any] = {"finish_reason": finish}
        if u is not None:
            end["usage"] = u
        yield event({"type": "message-end", "delta": end})
        yield sse("[DONE]")

    return StreamReply(frames(), content_type="text/event-stream")


def _split(text: str, n: int) -> list[str]:
    return replace(Scenario(), text=text, chunks=n).text_chunks()


# --- v2 embed -------------------------------------------------------------------------------------------

def embed_v2(request: FakeRequest, scenario: Scenario) -> Reply:
    body = request.json if isinstance(request.json, dict) else {}
    texts = _list(body.get("texts"))
    count = len(texts) + len(_list(body.get("inputs"))) or 1
    types = _list(body.get("embedding_types")) or ["float"]
    meta: dict[str, Any] = {"api_version": {"version": "2"}}
    if scenario.has("malformed-usage"):
        meta["billed_units"] = {"input_tokens": -7}
    elif not scenario.has("no-usage"):
        meta["billed_units"] = {"input_tokens": scenario.usage.input}
    return JsonReply({"id": _id(), "texts": [str(t).lower() for t in texts],
                      "embeddings": {str(t): [_VECTOR for _ in range(count)] for t in types},
                      "meta": meta, "response_type": "embeddings_by_type"})


# --- v1 chat --------------------------------------------------------------------------------------------

def _v1_response(request: FakeRequest, scenario: Scenario, generation_id: str) -> dict[str, Any]:
    body = request.json if isinstance(request.json, dict) else {}
    tools = scenario.has("tools")
    text = "" if tools else scenario.text
    history = _list(body.get("chat_history"))
    message = body.get("message")
    response: dict[str, Any] = {
        "response_id": _id(), "text": text, "generation_id": generation_id,
        "chat_history": [*history, {"role": "USER", "message": message if isinstance(message, str) else ""},
                         {"role": "CHATBOT", "message": text}],
        "finish_reason": "COMPLETE",
    }
    if tools:
        response["tool_calls"] = [{"name": _TOOL_NAME, "parameters": json.loads(_TOOL_ARGUMENTS)}]
    meta: dict[str, Any] = {"api_version": {"version": "1"}}
    u = usage(scenario.usage, scenario)
    if u is not None:
        meta.update(u)
    response["meta"] = meta
    return response


def chat_v1(request: FakeRequest, scenario: Scenario) -> Reply:
    generation_id = _id()
    if not _is_stream(request):
        return JsonReply(_v1_response(request, scenario, generation_id))

    def line(data: dict[str, Any]) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"

    def frames() -> Iterator[bytes]:
        yield line({"is_finished": False, "event_type": "stream-start", "generation_id": generation_id})
        if scenario.has("tools"):
            for piece in _split(_TOOL_ARGUMENTS, scenario.chunks):
                yield line({"is_finished": False, "event_type": "tool-calls-chunk",
                            "tool_call_delta": {"name": _TOOL_NAME, "index": 0, "parameters": piece}})
        else:
            for piece in scenario.text_chunks():
                yield line({"is_finished": False, "event_type": "text-generation", "text": piece})
        yield line({"is_finished": True, "event_type": "stream-end",
                    "response": _v1_response(request, scenario, generation_id), "finish_reason": "COMPLETE"})

    return StreamReply(frames(), content_type="application/stream+json")


def _route(path: str, handler: Any) -> Route:
    return Route("POST", re.compile(_PREFIX + re.escape(path)), handler, error_reply)


ROUTES = [
    _route("/v2/chat", chat_v2),
    _route("/v2/embed", embed_v2),
    _route("/v1/chat", chat_v1),
]
