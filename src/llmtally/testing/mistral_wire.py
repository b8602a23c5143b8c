"""Mistral's wire format for the fake provider: ``POST /v1/chat/completions`` and ``POST /v1/fim/completions``
(JSON, or SSE with ``"stream": true``), ``POST /v1/embeddings``, and Mistral's error body.

What it covers
--------------
* Shapes follow the ``mistralai`` SDK's types (``ChatCompletionResponse``, ``FIMCompletionResponse``,
  ``CompletionChunk``, ``EmbeddingResponse``, ``UsageInfo``) and the real recorded Mistral responses in the
  shared fixtures. Close to OpenAI's chat format but not the same, which is why this is not
  ``openai_wire``: every embeddings response has an ``id`` (the SDK requires it), and a stream *always*
  reports usage, in the chunk that carries the ``finish_reason`` (no ``stream_options`` opt-in, no extra
  usage-only chunk), before ``data: [DONE]``.
* Paths: the routes match under a ``/mistral`` path segment (``Mistral(server_url=fake.mistral_url)``;
  the SDK appends ``/v1/...``), so the default fake server can tell Mistral's requests from OpenAI's,
  which use the same ``/v1/chat/completions`` path.
* Usage in Mistral's semantics from the scenario's semconv counts: ``prompt_tokens`` = input (cached
  tokens included), ``completion_tokens`` = output, and ``prompt_tokens_details.cached_tokens`` =
  cache_read when non-zero, as the real API reports prompt-cache hits. Mistral has no cache-write or
  reasoning counts: both are already inside prompt/completion tokens. Embeddings report
  ``prompt_tokens`` = input and ``completion_tokens`` 0, with the nulls the real API sends beside them.
* ``no-usage``: the usage object is left out (the real API always sends it; this stands for gateways that
  drop it). A JSON answer without usage fails the SDK's own validation, which is the point: the call was
  answered, so it is not a rejected request.
* ``malformed-usage``: counts as strings, negatives and nulls.
* ``tools``: a ``get_weather`` tool call, finish reason ``tool_calls``; in a stream the whole call comes in
  one chunk, as Mistral sends it.
* ``cost`` is OpenAI-only (OpenRouter style) and is ignored here.
* Scenario errors use Mistral's body ``{"object": "error", "message", "type", "param", "code"}``; the SDK
  raises ``SDKError`` for them (``HTTPValidationError`` only for 422).
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

from llmtally.testing.scenario import FakeUsage, Scenario
from llmtally.testing.server import FakeRequest, JsonReply, Reply, Route, StreamReply, sse

_ids = itertools.count(1)
_PREFIX = r"(?:/[^/]+)*?/mistral"
_TOOL_CALL = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
_VECTOR = [0.0, 0.25, -0.5, 1.0]


def _id() -> str:
    """A 32-hex id, as Mistral's are; deterministic per process."""
    return f"{next(_ids):032x}"


def error_reply(status: int, message: str) -> JsonReply:
    kind, code = {400: ("invalid_request_error", "3000"), 401: ("unauthorized", "1000"),
                  404: ("not_found", "3001"), 429: ("rate_limited", "1300"),
                  500: ("internal_server_error", "5000")}.get(status, ("api_error", "0"))
    return JsonReply({"object": "error", "message": message, "type": kind, "param": None, "code": code},
                     status=status)


def usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    """``UsageInfo`` in Mistral's semantics (prompt includes cached), or None for ``no-usage``."""
    if scenario.has("no-usage"):
        return None
    if scenario.has("malformed-usage"):
        return {"prompt_tokens": str(u.input), "completion_tokens": -5, "total_tokens": None,
                "prompt_tokens_details": {"cached_tokens": None}}
    body: dict[str, Any] = {"prompt_tokens": u.input, "completion_tokens": u.output,
                            "total_tokens": u.input + u.output}
    if u.cache_read:
        body["prompt_tokens_details"] = {"cached_tokens": u.cache_read}
    return body


def _stream_requested(request: FakeRequest) -> bool:
    return isinstance(request.json, dict) and request.json.get("stream") is True


def _tool_calls() -> list[dict[str, Any]]:
    return [{"id": "Yx7Ab3Cd9", "type": "function", "function": dict(_TOOL_CALL), "index": 0}]


def completions(request: FakeRequest, scenario: Scenario) -> Reply:
    """Chat and FIM completions: the same response and chunk shapes."""
    cid, created, model = _id(), int(time.time()), scenario.model
    tools = scenario.has("tools")
    if not _stream_requested(request):
        message: dict[str, Any] = {"role": "assistant", "content": scenario.text, "tool_calls": None,
                                   "prefix": False}
        if tools:
            message = {"role": "assistant", "content": "", "tool_calls": _tool_calls(), "prefix": False}
        body: dict[str, Any] = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                                "choices": [{"index": 0, "message": message,
                                             "finish_reason": "tool_calls" if tools else "stop",
                                             "logprobs": None}]}
        u = usage(scenario.usage, scenario)
        if u is not None:
            body["usage"] = u
        return JsonReply(body)

    def chunk(delta: dict[str, Any], finish: str | None = None, last: bool = False) -> bytes:
        body: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if last:
            u = usage(scenario.usage, scenario)
            if u is not None:
                body["usage"] = u
        return sse(body)

    def frames() -> Iterator[bytes]:
        yield chunk({"role": "assistant", "content": ""})
        if tools:
            yield chunk({"tool_calls": _tool_calls()}, "tool_calls", last=True)
        else:
            for piece in scenario.text_chunks():
                yield chunk({"content": piece})
            yield chunk({"content": ""}, "stop", last=True)
        yield b"data: [DONE]\n\n"

    return StreamReply(frames())


def embeddings(request: FakeRequest, scenario: Scenario) -> Reply:
    body = request.json if isinstance(request.json, dict) else {}
    inputs = body.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs else 1
    reply: dict[str, Any] = {"id": _id(), "object": "list", "model": scenario.model,
                             "data": [{"object": "embedding", "embedding": list(_VECTOR), "index": i}
                                      for i in range(count)]}
    u = usage(scenario.usage, scenario)
    if u is not None:
        if not scenario.has("malformed-usage"):
            u = {"prompt_audio_seconds": None, "prompt_tokens": scenario.usage.input,
                 "total_tokens": scenario.usage.input, "completion_tokens": 0, "request_count": None,
                 "prompt_token_details": None}
        reply["usage"] = u
    return JsonReply(reply)


def _route(path: str, handler: Any) -> Route:
    return Route("POST", re.compile(_PREFIX + re.escape(path)), handler, error_reply)


ROUTES = [
    _route("/v1/chat/completions", completions),
    _route("/v1/fim/completions", completions),
    _route("/v1/embeddings", embeddings),
]
