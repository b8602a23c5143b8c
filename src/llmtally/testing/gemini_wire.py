"""Gemini's wire format for the fake provider (the Gemini API and Vertex AI's ``publishers/google``):
``:generateContent`` (JSON), ``:streamGenerateContent?alt=sse`` (SSE), ``:embedContent``,
``:batchEmbedContents``, ``:countTokens``, and Google's error body.

Usage is rendered in Gemini's own semantics from the semconv FakeUsage: ``promptTokenCount`` includes
cached tokens, ``thoughtsTokenCount`` (reasoning) is *outside* ``candidatesTokenCount``, and
``totalTokenCount`` is their sum. Stream chunks carry usage too; the last one has the final counts.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

from llmtally.testing.scenario import FakeUsage, Scenario
from llmtally.testing.server import FakeRequest, JsonReply, Reply, Route, StreamReply, sse

_ids = itertools.count(1)
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
           500: "INTERNAL"}


def error_reply(status: int, message: str) -> JsonReply:
    return JsonReply({"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}},
                     status=status)


def usage_metadata(u: FakeUsage, scenario: Scenario) -> dict[str, Any]:
    if scenario.has("malformed-usage"):
        return {"promptTokenCount": str(u.input), "candidatesTokenCount": -3, "totalTokenCount": None}
    meta: dict[str, Any] = {
        "promptTokenCount": u.input,
        "candidatesTokenCount": u.output - u.reasoning,
        "totalTokenCount": u.input + u.output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": u.input}],
    }
    if u.cache_read:
        meta["cachedContentTokenCount"] = u.cache_read
    if u.reasoning:
        meta["thoughtsTokenCount"] = u.reasoning
    return meta


def _candidate(text: str, finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def generate(request: FakeRequest, scenario: Scenario) -> Reply:
    rid = f"fake-gemini-{next(_ids):06d}"
    stream = request.params.get("method") == "streamGenerateContent"
    if not stream:
        body: dict[str, Any] = {"candidates": [_candidate(scenario.text, "STOP")], "modelVersion": scenario.model,
                                "responseId": rid}
        if not scenario.has("no-usage"):
            body["usageMetadata"] = usage_metadata(scenario.usage, scenario)
        return JsonReply(body)

    def frames() -> Iterator[bytes]:
        pieces = scenario.text_chunks()
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            chunk: dict[str, Any] = {"candidates": [_candidate(piece, "STOP" if last else None)],
                                     "modelVersion": scenario.model, "responseId": rid}
            if not scenario.has("no-usage"):
                if last:
                    chunk["usageMetadata"] = usage_metadata(scenario.usage, scenario)
                else:  # running counts: prompt known, output so far
                    chunk["usageMetadata"] = {"promptTokenCount": scenario.usage.input,
                                              "totalTokenCount": scenario.usage.input}
            yield sse(chunk)

    return StreamReply(frames(), content_type="text/event-stream")


_VECTOR = [0.0, 0.25, -0.5, 1.0]


def embed(request: FakeRequest, scenario: Scenario) -> Reply:
    return JsonReply({"embedding": {"values": _VECTOR}})


def batch_embed(request: FakeRequest, scenario: Scenario) -> Reply:
    requests = request.json.get("requests") if isinstance(request.json, dict) else None
    count = len(requests) if isinstance(requests, list) else 1
    return JsonReply({"embeddings": [{"values": _VECTOR} for _ in range(count)]})


def count_tokens(request: FakeRequest, scenario: Scenario) -> Reply:
    return JsonReply({"totalTokens": scenario.usage.input})


def _route(methods: str, handler: Any) -> Route:
    pattern = re.compile(rf"(?:/[^/]+)*?/models/(?P<model>[^/:]+):(?P<method>{methods})")
    return Route("POST", pattern, handler, error_reply)


ROUTES = [
    _route("generateContent|streamGenerateContent", generate),
    _route("embedContent", embed),
    _route("batchEmbedContents", batch_embed),
    _route("countTokens", count_tokens),
]
