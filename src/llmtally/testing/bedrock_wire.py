"""AWS Bedrock Runtime's wire format for the fake provider: ``POST /model/{modelId}/converse``,
``/converse-stream``, ``/invoke`` and ``/invoke-with-response-stream``, the binary AWS event-stream
encoding, and Bedrock's error replies.

What it covers
--------------
* Paths as botocore sends them (``bedrock-runtime`` service model, restJson1): the model id is one
  URL-encoded path segment (``anthropic.claude-3-5-haiku-20241022-v1%3A0``, ARNs with ``%2F``), so
  ``boto3.client("bedrock-runtime", endpoint_url=fake.url, ...)`` works as is; the route decodes it.
* Converse shapes follow botocore's service model (``ConverseResponse``, ``TokenUsage``, the
  ``ConverseStreamOutput`` events ``messageStart``, ``contentBlockStart``/``Delta``/``Stop``,
  ``messageStop`` and ``metadata``) and the recorded responses in the shared fixtures.
* ``invoke``/``invoke-with-response-stream`` bodies depend on the model family, read from the model id
  (an ARN's last segment, without a cross-region prefix such as ``us.``): Anthropic Messages
  (``anthropic.*``), Meta Llama (``meta.*``: ``generation``, ``prompt_token_count``,
  ``generation_token_count``), Amazon Titan Text (``amazon.titan-text*``: ``inputTextTokenCount``,
  ``results``), Titan embeddings (``amazon.titan-embed*``: ``embedding``, ``inputTextTokenCount``) and
  Amazon Nova (``amazon.nova*``: converse-shaped ``output``/``usage``). Another family is refused with a
  ``ValidationException``, as Bedrock refuses a body it cannot read.
* Usage is rendered in Bedrock's semantics from the scenario's semconv counts. Bedrock's metering is
  disjoint, like Anthropic's: ``inputTokens`` / ``inputTokenCount`` / ``X-Amzn-Bedrock-Input-Token-Count``
  exclude cache reads and writes (``input - cache_read - cache_write``), which come separately
  (``cacheReadInputTokens``/``cacheWriteInputTokens`` in Converse, ``...InputTokenCount`` in invocation
  metrics and headers, when non-zero); ``totalTokens`` = input + output. ``cache_write_1h`` is given as
  Converse ``cacheDetails`` ({"ttl": "1h"|"5m", "inputTokens"}) and, in Anthropic bodies and
  ``message_start``, as Anthropic's ``cache_creation`` split; the metering headers and invocation metrics
  carry only the total. invoke_model meters in the response
  headers ``X-Amzn-Bedrock-Input-Token-Count`` / ``-Output-Token-Count`` (plus the cache headers), and
  its streams in ``amazon-bedrock-invocationMetrics`` on the last chunk; the bodies also carry the
  model's own counts (Anthropic's ``usage``, Llama's and Titan's counts, Nova's ``usage``).
* Streams are ``application/vnd.amazon.eventstream``: each message is a 12-byte prelude (total length,
  headers length, CRC32 of those 8 bytes), string headers ``:event-type``, ``:content-type``,
  ``:message-type``, the JSON payload and a CRC32 of everything before it. invoke streams wrap each
  model chunk as a ``chunk`` event ``{"bytes": base64(json)}``. :func:`event_message` and
  :func:`exception_message` build frames for your own recordings (e.g. a ``throttlingException`` in
  the middle of a stream, which botocore raises as ``EventStreamError``).
* ``no-usage``: Converse ``usage``, the ``metadata`` event, the metering headers, the invocation metrics
  and the bodies' own counts are all left out (the real service always reports them; this stands for
  proxies that drop them). ``malformed-usage``: counts as strings, negatives and nulls. ``tools``: a
  ``get_weather`` tool use (Converse ``toolUse``, Anthropic ``tool_use``), stop reason ``tool_use``.
  ``cost`` is OpenAI-only and ignored. ``cut`` drops the connection half-way through a stream.
* Scenario errors are Bedrock's: status 400 ``ValidationException``, 429 ``ThrottlingException``, 500
  ``InternalServerException`` (others ``ServiceUnavailableException``), named in the
  ``x-amzn-ErrorType`` header with a ``{"message": ...}`` body, so botocore raises the modelled
  ``ClientError`` subclass. (botocore retries 429 and 5xx by default: give the client
  ``Config(retries={"total_max_attempts": 1})`` in tests.)
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import struct
import zlib
from collections.abc import Iterator
from typing import Any

from llmtally.testing.scenario import FakeUsage, Scenario
from llmtally.testing.server import FakeRequest, JsonReply, Reply, Route, StreamReply

_ids = itertools.count(1)
_PREFIX = r"(?:/[^/]+)*?"
_MODEL = r"/model/(?P<model>[^/]+)"
_TOOL_NAME = "get_weather"
_TOOL_INPUT = '{"city": "Paris"}'
_VECTOR = [0.0, 0.25, -0.5, 1.0]
EVENT_STREAM = "application/vnd.amazon.eventstream"

ERROR_TYPES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
               408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
               500: "InternalServerException", 503: "ServiceUnavailableException"}


def _request_id() -> str:
    return f"00000000-0000-4000-8000-{next(_ids):012d}"


def error_reply(status: int, message: str) -> JsonReply:
    """Bedrock's error reply: the exception name in ``x-amzn-ErrorType`` (as the service sends it, with
    its namespace after a colon) and a ``{"message": ...}`` body."""
    name = ERROR_TYPES.get(status, "ServiceUnavailableException" if status >= 500 else "ValidationException")
    return JsonReply({"message": message}, status=status,
                     headers={"x-amzn-ErrorType": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                              "x-amzn-RequestId": _request_id()})


# --- the AWS event-stream encoding -------------------------------------------------------------------

def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # name length (1 byte), name, type 7 = string, value length (2 bytes), value
    return bytes([len(raw_name)]) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude (total and headers lengths, their CRC32), headers, payload,
    and the message CRC32 (over every byte before it)."""
    encoded = b"".join(_string_header(k, v) for k, v in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` message of type ``event_type`` with a JSON payload."""
    return event_message({":event-type": event_type, ":content-type": "application/json",
                          ":message-type": "event"}, json.dumps(payload, separators=(",", ":")).encode())


def chunk_event(body: dict[str, Any]) -> bytes:
    """An invoke stream's ``chunk`` event: the model's JSON chunk, base64-encoded in ``bytes``."""
    data = base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()
    return event("chunk", {"bytes": data})


def exception_message(exception_type: str, message: str) -> bytes:
    """An ``exception`` message (e.g. ``throttlingException``, ``modelStreamErrorException``)."""
    return event_message({":exception-type": exception_type, ":content-type": "application/json",
                          ":message-type": "exception"}, json.dumps({"message": message}).encode())


# --- usage in Bedrock's semantics ------------------------------------------------------------------

def _malformed(scenario: Scenario) -> bool:
    return scenario.has("malformed-usage")


def converse_usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    """Converse ``TokenUsage``: ``inputTokens`` excludes cache reads and writes."""
    if scenario.has("no-usage"):
        return None
    if _malformed(scenario):
        # botocore int()s modelled integers (a non-numeric string would break the SDK itself): a
        # numeric string and negative counts reach the app.
        return {"inputTokens": str(u.uncached_input), "outputTokens": -3, "cacheReadInputTokens": -7}
    out: dict[str, Any] = {"inputTokens": u.uncached_input, "outputTokens": u.output,
                           "totalTokens": u.input + u.output}
    if u.cache_read:
        out["cacheReadInputTokens"] = u.cache_read
    if u.cache_write:
        out["cacheWriteInputTokens"] = u.cache_write
        details = [{"ttl": "1h", "inputTokens": u.cache_write_1h}] if u.cache_write_1h else []
        if u.cache_write > u.cache_write_1h:
            details.append({"ttl": "5m", "inputTokens": u.cache_write - u.cache_write_1h})
        out["cacheDetails"] = details
    return out


def invocation_metrics(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    """``amazon-bedrock-invocationMetrics`` of an invoke stream's last chunk."""
    if scenario.has("no-usage"):
        return None
    if _malformed(scenario):
        return {"inputTokenCount": str(u.uncached_input), "outputTokenCount": -3, "invocationLatency": 5}
    out: dict[str, Any] = {"inputTokenCount": u.uncached_input, "outputTokenCount": u.output,
                           "invocationLatency": 120, "firstByteLatency": 40}
    if u.cache_read:
        out["cacheReadInputTokenCount"] = u.cache_read
    if u.cache_write:
        out["cacheWriteInputTokenCount"] = u.cache_write
    return out


def metering_headers(u: FakeUsage, scenario: Scenario) -> dict[str, str]:
    """invoke_model's ``X-Amzn-Bedrock-*-Token-Count`` response headers."""
    if scenario.has("no-usage"):
        return {}
    if _malformed(scenario):
        return {"X-Amzn-Bedrock-Input-Token-Count": str(u.uncached_input),
                "X-Amzn-Bedrock-Output-Token-Count": "-3"}
    headers = {"X-Amzn-Bedrock-Input-Token-Count": str(u.uncached_input),
               "X-Amzn-Bedrock-Output-Token-Count": str(u.output), "X-Amzn-Bedrock-Invocation-Latency": "120"}
    if u.cache_read:
        headers["X-Amzn-Bedrock-Cache-Read-Input-Token-Count"] = str(u.cache_read)
    if u.cache_write:
        headers["X-Amzn-Bedrock-Cache-Write-Input-Token-Count"] = str(u.cache_write)
    return headers


# --- model families -----------------------------------------------------------------------------------

ANTHROPIC, LLAMA, TITAN_TEXT, TITAN_EMBED, NOVA = "anthropic", "llama", "titan-text", "titan-embed", "nova"
_REGION = re.compile(r"^(?:us|eu|apac|global|jp|au|ca|us-gov)\.")


def family(model_id: str) -> str | None:
    """The body format of a model id (plain, cross-region profile, or an ARN ending in either)."""
    name = model_id.rsplit("/", 1)[-1].lower()
    name = _REGION.sub("", name, count=1)
    for prefix, fam in (("anthropic.", ANTHROPIC), ("meta.", LLAMA), ("amazon.titan-text", TITAN_TEXT),
                        ("amazon.titan-embed", TITAN_EMBED), ("amazon.nova", NOVA)):
        if name.startswith(prefix):
            return fam
    return None


def _anthropic_model(model_id: str) -> str:
    """The ``model`` an Anthropic body on Bedrock reports: the Anthropic name, without vendor or version."""
    name = _REGION.sub("", model_id.rsplit("/", 1)[-1], count=1)
    name = name.removeprefix("anthropic.")
    return re.sub(r"-v\d+(?::\d+)?$", "", name)


def _anthropic_usage(u: FakeUsage, scenario: Scenario, output: int) -> dict[str, Any] | None:
    if scenario.has("no-usage"):
        return None
    if _malformed(scenario):
        return {"input_tokens": str(u.uncached_input), "output_tokens": -3, "cache_read_input_tokens": None}
    usage: dict[str, Any] = {"input_tokens": u.uncached_input, "cache_creation_input_tokens": u.cache_write,
                             "cache_read_input_tokens": u.cache_read, "output_tokens": output}
    if u.cache_write:  # Anthropic's split of the writes by TTL, which Bedrock's own metering lacks
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": u.cache_write - u.cache_write_1h,
                                   "ephemeral_1h_input_tokens": u.cache_write_1h}
    return usage


def _nova_usage(u: FakeUsage, scenario: Scenario) -> dict[str, Any] | None:
    if scenario.has("no-usage"):
        return None
    if _malformed(scenario):
        return {"inputTokens": str(u.uncached_input), "outputTokens": -3}
    return {"inputTokens": u.uncached_input, "outputTokens": u.output, "totalTokens": u.input + u.output,
            "cacheReadInputTokenCount": u.cache_read, "cacheWriteInputTokenCount": u.cache_write}


def _with(body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``body`` plus the fields that are not None (usage left out under ``no-usage``)."""
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _counts(scenario: Scenario, *pairs: tuple[str, Any]) -> dict[str, Any]:
    """Llama/Titan count fields: dropped under ``no-usage``, garbage under ``malformed-usage``."""
    if scenario.has("no-usage"):
        return {}
    if _malformed(scenario):
        return {name: "n/a" for name, _ in pairs}
    return dict(pairs)


def _invoke_body(fam: str, model_id: str, scenario: Scenario) -> dict[str, Any]:
    u, text = scenario.usage, scenario.text
    if fam == ANTHROPIC:
        tools = scenario.has("tools")
        content: list[dict[str, Any]] = (
            [{"type": "tool_use", "id": f"toolu_bdrk_{next(_ids):06d}", "name": _TOOL_NAME,
              "input": json.loads(_TOOL_INPUT)}] if tools else [{"type": "text", "text": text}])
        return _with({"id": f"msg_bdrk_{next(_ids):06d}", "type": "message", "role": "assistant",
                      "model": _anthropic_model(model_id), "content": content,
                      "stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None},
                     usage=_anthropic_usage(u, scenario, u.output))
    if fam == LLAMA:
        return {"generation": text, **_counts(scenario, ("prompt_token_count", u.input),
                                              ("generation_token_count", u.output)), "stop_reason": "stop"}
    if fam == TITAN_TEXT:
        result = {"outputText": text, "completionReason": "FINISH", **_counts(scenario, ("tokenCount", u.output))}
        return {**_counts(scenario, ("inputTextTokenCount", u.input)), "results": [result]}
    if fam == TITAN_EMBED:
        return {"embedding": _VECTOR, "embeddingsByType": {"float": _VECTOR},
                **_counts(scenario, ("inputTextTokenCount", u.input))}
    return _with({"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                  "stopReason": "end_turn"}, usage=_nova_usage(u, scenario))


def _invoke_chunks(fam: str, model_id: str, scenario: Scenario) -> Iterator[dict[str, Any]]:
    """The model's own stream chunks (without Bedrock's invocation metrics)."""
    u, pieces = scenario.usage, scenario.text_chunks()
    if fam == ANTHROPIC:
        message = _with({"id": f"msg_bdrk_{next(_ids):06d}", "type": "message", "role": "assistant",
                         "model": _anthropic_model(model_id), "content": [], "stop_reason": None,
                         "stop_sequence": None}, usage=_anthropic_usage(u, scenario, 1))
        yield {"type": "message_start", "message": message}
        yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        for piece in pieces:
            yield {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        yield {"type": "content_block_stop", "index": 0}
        delta_usage = None if scenario.has("no-usage") else {"output_tokens": "x" if _malformed(scenario) else u.output}
        yield _with({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}},
                    usage=delta_usage)
        yield {"type": "message_stop"}
    elif fam == LLAMA:
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield {"generation": piece,
                   **_counts(scenario, ("prompt_token_count", u.input if i == 0 else None),
                             ("generation_token_count", u.output if last else i + 1)),
                   "stop_reason": "stop" if last else None}
    elif fam == TITAN_TEXT:
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            yield {"outputText": piece, "index": 0,
                   **_counts(scenario, ("inputTextTokenCount", u.input if i == 0 else None),
                             ("totalOutputTextTokenCount", u.output if last else None)),
                   "completionReason": "FINISH" if last else None}
    else:  # Nova
        yield {"messageStart": {"role": "assistant"}}
        for piece in pieces:
            yield {"contentBlockDelta": {"delta": {"text": piece}, "contentBlockIndex": 0}}
        yield {"contentBlockStop": {"contentBlockIndex": 0}}
        yield {"messageStop": {"stopReason": "end_turn"}}
        usage = _nova_usage(u, scenario)
        if usage is not None:
            yield {"metadata": {"usage": usage, "metrics": {}, "trace": {}}}


# --- handlers -----------------------------------------------------------------------------------------

def _model_id(request: FakeRequest, scenario: Scenario) -> str:
    return scenario.model or request.params.get("model", "")


def _unknown_family(model_id: str) -> JsonReply:
    return error_reply(400, f"The fake provider does not know the body format of model {model_id!r}.")


def invoke(request: FakeRequest, scenario: Scenario) -> Reply:
    model_id = _model_id(request, scenario)
    fam = family(model_id)
    if fam is None:
        return _unknown_family(model_id)
    headers = {"x-amzn-RequestId": _request_id(), **metering_headers(scenario.usage, scenario)}
    if fam == TITAN_EMBED:  # embeddings produce no output tokens: only the input is metered
        headers.pop("X-Amzn-Bedrock-Output-Token-Count", None)
    return JsonReply(_invoke_body(fam, model_id, scenario), headers=headers)


def invoke_stream(request: FakeRequest, scenario: Scenario) -> Reply:
    model_id = _model_id(request, scenario)
    fam = family(model_id)
    if fam is None or fam == TITAN_EMBED:
        return _unknown_family(model_id)

    def frames() -> Iterator[bytes]:
        chunks = list(_invoke_chunks(fam, model_id, scenario))
        metrics = invocation_metrics(scenario.usage, scenario)
        if metrics is not None:
            chunks[-1] = {**chunks[-1], "amazon-bedrock-invocationMetrics": metrics}
        for body in chunks:
            yield chunk_event(body)

    return StreamReply(frames(), content_type=EVENT_STREAM,
                       headers={"x-amzn-RequestId": _request_id(), "X-Amzn-Bedrock-Content-Type": "application/json"})


def converse(request: FakeRequest, scenario: Scenario) -> Reply:
    tools = scenario.has("tools")
    content: list[dict[str, Any]] = (
        [{"toolUse": {"toolUseId": f"tooluse_{next(_ids):06d}", "name": _TOOL_NAME,
                      "input": json.loads(_TOOL_INPUT)}}] if tools else [{"text": scenario.text}])
    body = _with({"output": {"message": {"role": "assistant", "content": content}},
                  "stopReason": "tool_use" if tools else "end_turn", "metrics": {"latencyMs": 120}},
                 usage=converse_usage(scenario.usage, scenario))
    return JsonReply(body, headers={"x-amzn-RequestId": _request_id()})


def converse_stream(request: FakeRequest, scenario: Scenario) -> Reply:
    tools = scenario.has("tools")

    def frames() -> Iterator[bytes]:
        yield event("messageStart", {"role": "assistant"})
        if tools:
            start = {"toolUse": {"toolUseId": f"tooluse_{next(_ids):06d}", "name": _TOOL_NAME}}
            yield event("contentBlockStart", {"contentBlockIndex": 0, "start": start})
            for piece in _split(_TOOL_INPUT, scenario.chunks):
                yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}})
        else:
            for piece in scenario.text_chunks():
                yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        yield event("contentBlockStop", {"contentBlockIndex": 0})
        yield event("messageStop", {"stopReason": "tool_use" if tools else "end_turn"})
        usage = converse_usage(scenario.usage, scenario)
        if usage is not None:
            yield event("metadata", {"usage": usage, "metrics": {"latencyMs": 120}})

    return StreamReply(frames(), content_type=EVENT_STREAM, headers={"x-amzn-RequestId": _request_id()})


def _split(text: str, n: int) -> list[str]:
    n = max(1, min(n, len(text)))
    size, extra = divmod(len(text), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return out


def _route(suffix: str, handler: Any) -> Route:
    return Route("POST", re.compile(_PREFIX + _MODEL + re.escape(suffix)), handler, error_reply)


ROUTES = [
    _route("/converse", converse),
    _route("/converse-stream", converse_stream),
    _route("/invoke", invoke),
    _route("/invoke-with-response-stream", invoke_stream),
]
