"""Ollama's native wire format for the fake provider: ``POST /api/chat``, ``POST /api/generate`` (one JSON
object, or NDJSON lines when the request says ``"stream": true``), ``POST /api/embed``, the deprecated
``POST /api/embeddings``, and Ollama's error body ``{"error": "..."}``.

Like the real server, a request that omits ``stream`` is answered with a stream (the ``ollama`` SDK always
sends it explicitly, ``false`` by default). Usage is rendered in Ollama's own fields from the semconv
FakeUsage: ``prompt_eval_count`` = input, ``eval_count`` = output (thinking included: Ollama counts every
generated token; it has no cache or reasoning sub-counts), with nanosecond durations beside them. In a
stream only the last line (``"done": true``) carries counts and durations; the others carry text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from llmtally.testing.scenario import Scenario
from llmtally.testing.server import FakeRequest, JsonReply, Reply, Route, StreamReply

NDJSON = "application/x-ndjson"
_TOOL_CALL = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
_CONTEXT = [128006, 882, 128007, 271, 13347, 128009]  # /api/generate's token ids (shape only)
_VECTOR = [0.0, 0.25, -0.5, 1.0]


def error_reply(status: int, message: str) -> JsonReply:
    return JsonReply({"error": message}, status=status)


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _wants_stream(request: FakeRequest) -> bool:
    body = request.json if isinstance(request.json, dict) else {}
    return body.get("stream", True) is not False  # Ollama's default is to stream


def counts(scenario: Scenario) -> dict[str, Any]:
    """The final object's counts and durations in Ollama's fields (nanoseconds, deterministic)."""
    u = scenario.usage
    load = 1_000_000
    prompt_ns = 100_000 * max(u.input, 1)
    eval_ns = 10_000_000 * max(u.output, 1)
    out: dict[str, Any] = {"total_duration": load + prompt_ns + eval_ns, "load_duration": load}
    if scenario.has("no-usage"):
        return out
    if scenario.has("malformed-usage"):
        # A string the SDK's pydantic types coerce to int, and a negative count.
        return {**out, "prompt_eval_count": str(u.input), "prompt_eval_duration": prompt_ns,
                "eval_count": -3, "eval_duration": eval_ns}
    return {**out, "prompt_eval_count": u.input, "prompt_eval_duration": prompt_ns,
            "eval_count": u.output, "eval_duration": eval_ns}


def _message(content: str, tools: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": "" if tools else content}
    if tools:
        message["tool_calls"] = [_TOOL_CALL]
    return message


def chat(request: FakeRequest, scenario: Scenario) -> Reply:
    tools = scenario.has("tools")
    if not _wants_stream(request):
        return JsonReply({"model": scenario.model, "created_at": _now(), "message": _message(scenario.text, tools),
                          "done_reason": "stop", "done": True, **counts(scenario)})

    def frames() -> Iterator[bytes]:
        pieces = [""] if tools else scenario.text_chunks()
        for piece in pieces:
            yield _line({"model": scenario.model, "created_at": _now(), "message": _message(piece, tools),
                         "done": False})
        yield _line({"model": scenario.model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
                     "done": True, "done_reason": "stop", **counts(scenario)})

    return StreamReply(frames(), content_type=NDJSON)


def generate(request: FakeRequest, scenario: Scenario) -> Reply:
    if not _wants_stream(request):
        return JsonReply({"model": scenario.model, "created_at": _now(), "response": scenario.text, "done": True,
                          "done_reason": "stop", "context": _CONTEXT, **counts(scenario)})

    def frames() -> Iterator[bytes]:
        for piece in scenario.text_chunks():
            yield _line({"model": scenario.model, "created_at": _now(), "response": piece, "done": False})
        yield _line({"model": scenario.model, "created_at": _now(), "response": "", "done": True,
                     "done_reason": "stop", "context": _CONTEXT, **counts(scenario)})

    return StreamReply(frames(), content_type=NDJSON)


def embed(request: FakeRequest, scenario: Scenario) -> Reply:
    body = request.json if isinstance(request.json, dict) else {}
    inputs = body.get("input")
    n = len(inputs) if isinstance(inputs, list) else 1
    reply: dict[str, Any] = {"model": scenario.model, "embeddings": [_VECTOR for _ in range(n)],
                             "total_duration": 2_000_000, "load_duration": 1_000_000}
    if scenario.has("malformed-usage"):
        reply["prompt_eval_count"] = -1
    elif not scenario.has("no-usage"):
        reply["prompt_eval_count"] = scenario.usage.input
    return JsonReply(reply)


def embeddings(request: FakeRequest, scenario: Scenario) -> Reply:
    """The deprecated single-prompt endpoint: a vector and no counts at all."""
    return JsonReply({"embedding": _VECTOR})


def _route(path: str, handler: Any) -> Route:
    return Route("POST", re.compile(re.escape(path)), handler, error_reply)


ROUTES = [
    _route("/api/chat", chat),
    _route("/api/generate", generate),
    _route("/api/embed", embed),
    _route("/api/embeddings", embeddings),
]
