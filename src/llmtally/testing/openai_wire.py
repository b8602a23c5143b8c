"""OpenAI's wire format for the fake provider: chat completions (JSON and SSE), the Responses API
(JSON and its event stream), embeddings, legacy completions, image generation, and error bodies.

Shapes follow real recorded responses (shared fixtures) and the openai SDK's types. Paths match the
OpenAI API (``/v1/...``), OpenAI-compatible prefixes (``/openai/v1/...``) and Azure deployments
(``/openai/deployments/<deployment>/...``, where the deployment is the model).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

from llmtally.testing.scenario import FakeUsage, Scenario
from llmtally.testing.server import FakeRequest, JsonReply, Reply, Route, StreamReply, sse

_ids = itertools.count(1)
_PREFIX = r"(?:/openai/deployments/(?P<model>[^/]+)|(?:/[^/]+)*?)"
_TOOL_CALL = {"name": "get_weather", "arguments": '{"city":"Paris"}'}


def _id(prefix: str) -> str:
    return f"{prefix}-fake{next(_ids):06d}"


def error_reply(status: int, message: str) -> JsonReply:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            429: "rate_limit_exceeded", 500: "server_error"}.get(status, "api_error")
    return JsonReply({"error": {"message": message, "type": kind, "param": None, "code": kind}}, status=status)


# --- usage in OpenAI's semantics (inclusive: prompt includes cached, completion includes reasoning) ----

def chat_usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any]:
    if scenario.has("malformed-usage"):
        return {"prompt_tokens": str(u.input), "completion_tokens": -5, "total_tokens": None,
                "prompt_tokens_details": {"cached_tokens": None}, "completion_tokens_details": "n/a"}
    details: dict[str, Any] = {"cached_tokens": u.cache_read, "audio_tokens": 0}
    if u.cache_write:
        details["cache_write_tokens"] = u.cache_write
    usage: dict[str, Any] = {
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }
    _add_cost(usage, u, scenario)
    return usage


def responses_usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    if scenario.has("no-usage"):
        return None
    details: dict[str, Any] = {"cached_tokens": u.cache_read}
    if u.cache_write:
        details["cache_write_tokens"] = u.cache_write
    usage: dict[str, Any] = {
        "input_tokens": u.input,
        "input_tokens_details": details,
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.output,
    }
    _add_cost(usage, u, scenario)
    return usage


def _add_cost(usage: dict[str, Any], u: FakeUsage, scenario: Scenario) -> None:
    if u.cost is not None or scenario.has("cost"):
        usage["cost"] = u.cost if u.cost is not None else 0.00042


def _wants_usage(request: FakeRequest, scenario: Scenario) -> bool:
    options = request.json.get("stream_options") if isinstance(request.json, dict) else None
    return isinstance(options, dict) and options.get("include_usage") is True and not scenario.has("no-usage")


def _n(request: FakeRequest) -> int:
    n = request.json.get("n") if isinstance(request.json, dict) else None
    return n if isinstance(n, int) and n > 0 else 1


def _stream_requested(request: FakeRequest) -> bool:
    return isinstance(request.json, dict) and request.json.get("stream") is True


# --- chat completions ------------------------------------------------------------------------------

def chat_completions(request: FakeRequest, scenario: Scenario) -> Reply:
    model, n, created = scenario.model, _n(request), int(time.time())
    cid = _id("chatcmpl")
    if not _stream_requested(request):
        choices = []
        for i in range(n):
            message: dict[str, Any] = {"role": "assistant", "content": scenario.text, "refusal": None}
            finish = "stop"
            if scenario.has("tools"):
                message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                    {"id": f"call_fake{i}", "type": "function", "function": dict(_TOOL_CALL)}]}
                finish = "tool_calls"
            choices.append({"index": i, "message": message, "logprobs": None, "finish_reason": finish})
        body: dict[str, Any] = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                                "choices": choices, "service_tier": "default", "system_fingerprint": "fp_fake"}
        if not scenario.has("no-usage"):
            body["usage"] = chat_usage(scenario.usage, scenario)
        return JsonReply(body)
    return StreamReply(_chat_stream(request, scenario, cid, model, n, created))


def _chat_stream(request: FakeRequest, scenario: Scenario, cid: str, model: str, n: int,
                 created: int) -> Iterator[bytes]:
    with_usage = _wants_usage(request, scenario)

    def chunk(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                "system_fingerprint": "fp_fake", "service_tier": "default", "choices": choices}
        if with_usage:
            body["usage"] = usage
        return sse(body)

    for i in range(n):
        yield chunk([{"index": i, "delta": {"role": "assistant", "content": "", "refusal": None},
                      "logprobs": None, "finish_reason": None}])
    if scenario.has("tools"):
        for i in range(n):
            call = {"index": 0, "id": f"call_fake{i}", "type": "function",
                    "function": {"name": _TOOL_CALL["name"], "arguments": ""}}
            yield chunk([{"index": i, "delta": {"tool_calls": [call]}, "logprobs": None, "finish_reason": None}])
            yield chunk([{"index": i, "delta": {"tool_calls": [
                {"index": 0, "function": {"arguments": _TOOL_CALL["arguments"]}}]},
                "logprobs": None, "finish_reason": None}])
        finish = "tool_calls"
    else:
        for piece in scenario.text_chunks():
            for i in range(n):
                yield chunk([{"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}])
        finish = "stop"
    for i in range(n):
        yield chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}])
    if with_usage:
        yield chunk([], chat_usage(scenario.usage, scenario))
    yield b"data: [DONE]\n\n"


# --- legacy completions ----------------------------------------------------------------------------

def completions(request: FakeRequest, scenario: Scenario) -> Reply:
    cid, created, model = _id("cmpl"), int(time.time()), scenario.model
    usage = {"prompt_tokens": scenario.usage.input, "completion_tokens": scenario.usage.output,
             "total_tokens": scenario.usage.input + scenario.usage.output}
    if not _stream_requested(request):
        body: dict[str, Any] = {"id": cid, "object": "text_completion", "created": created, "model": model,
                                "choices": [{"text": scenario.text, "index": 0, "logprobs": None,
                                             "finish_reason": "stop"}]}
        if not scenario.has("no-usage"):
            body["usage"] = usage
        return JsonReply(body)

    def frames() -> Iterator[bytes]:
        for piece in scenario.text_chunks():
            yield sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}]})
        yield sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                   "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": "stop"}]})
        if _wants_usage(request, scenario):
            yield sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                       "choices": [], "usage": usage})
        yield b"data: [DONE]\n\n"

    return StreamReply(frames())


# --- Responses API ---------------------------------------------------------------------------------

def _response_object(scenario: Scenario, rid: str, created: int, status: str, output: list[Any],
                     usage: Any) -> dict[str, Any]:
    return {"id": rid, "object": "response", "created_at": created, "status": status, "background": False,
            "error": None, "incomplete_details": None, "instructions": None, "max_output_tokens": None,
            "model": scenario.model, "output": output, "parallel_tool_calls": True,
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "service_tier": "default", "store": True, "temperature": 1.0,
            "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": None, "metadata": {}}


def responses(request: FakeRequest, scenario: Scenario) -> Reply:
    rid, mid, created = _id("resp"), _id("msg"), int(time.time())
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": scenario.text}
    item: dict[str, Any] = {"id": mid, "type": "message", "status": "completed", "content": [part],
                            "role": "assistant"}
    if scenario.has("tools"):
        item = {"id": mid, "type": "function_call", "status": "completed", "call_id": "call_fake0",
                **_TOOL_CALL}
    usage = responses_usage(scenario.usage, scenario)
    if not _stream_requested(request):
        return JsonReply(_response_object(scenario, rid, created, "completed", [item], usage))

    def frames() -> Iterator[bytes]:
        seq = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            return sse({"type": kind, **fields, "sequence_number": next(seq)}, event=kind)

        yield event("response.created", response=_response_object(scenario, rid, created, "in_progress", [], None))
        yield event("response.in_progress",
                    response=_response_object(scenario, rid, created, "in_progress", [], None))
        if scenario.has("tools"):
            yield event("response.output_item.added", output_index=0, item={**item, "status": "in_progress"})
            yield event("response.function_call_arguments.delta", item_id=mid, output_index=0,
                        delta=_TOOL_CALL["arguments"])
            yield event("response.function_call_arguments.done", item_id=mid, output_index=0,
                        arguments=_TOOL_CALL["arguments"])
        else:
            yield event("response.output_item.added", output_index=0,
                        item={"id": mid, "type": "message", "status": "in_progress", "content": [],
                              "role": "assistant"})
            yield event("response.content_part.added", item_id=mid, output_index=0, content_index=0,
                        part={**part, "text": ""})
            for piece in scenario.text_chunks():
                yield event("response.output_text.delta", item_id=mid, output_index=0, content_index=0,
                            delta=piece, logprobs=[])
            yield event("response.output_text.done", item_id=mid, output_index=0, content_index=0,
                        text=scenario.text, logprobs=[])
            yield event("response.content_part.done", item_id=mid, output_index=0, content_index=0, part=part)
        yield event("response.output_item.done", output_index=0, item=item)
        yield event("response.completed",
                    response=_response_object(scenario, rid, created, "completed", [item], usage))

    return StreamReply(frames())


# --- embeddings and images -------------------------------------------------------------------------

def embeddings(request: FakeRequest, scenario: Scenario) -> Reply:
    body = request.json if isinstance(request.json, dict) else {}
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs and not isinstance(inputs[0], int) else 1
    vector = [0.0, 0.25, -0.5, 1.0]
    data = []
    for i in range(count):
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": i, "embedding": encoded})
    reply: dict[str, Any] = {"object": "list", "data": data, "model": scenario.model}
    if not scenario.has("no-usage"):
        reply["usage"] = {"prompt_tokens": scenario.usage.input, "total_tokens": scenario.usage.input}
    return JsonReply(reply)


_PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def images(request: FakeRequest, scenario: Scenario) -> Reply:
    n = _n(request)
    body: dict[str, Any] = {"created": int(time.time()), "data": [{"b64_json": _PNG_1PX} for _ in range(n)]}
    if scenario.model.startswith("gpt-image") and not scenario.has("no-usage"):
        u = scenario.usage
        body["usage"] = {"input_tokens": u.input, "output_tokens": u.output, "total_tokens": u.input + u.output,
                         "input_tokens_details": {"text_tokens": u.input, "image_tokens": 0}}
    return JsonReply(body)


def _route(suffix: str, handler: Any) -> Route:
    return Route("POST", re.compile(_PREFIX + suffix), handler, error_reply)


ROUTES = [
    _route("/chat/completions", chat_completions),
    _route("/responses", responses),
    _route("/embeddings", embeddings),
    _route("/completions", completions),
    _route("/images/generations", images),
]


def json_lines(frames: Iterator[bytes]) -> list[Any]:
    """Decode SSE frames back into JSON payloads (for tests of the fake itself)."""
    out = []
    for frame in frames:
        for line in frame.decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))
    return out
