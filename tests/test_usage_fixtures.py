"""Normalisers against 68 real recorded provider responses (shared/fixtures/real-payloads.jsonl).

Each line is one HTTP response (non-stream JSON, SSE, NDJSON or a binary AWS event stream) with the token
counts it must normalise to under OpenTelemetry GenAI semantics (``expected``). The usage payload is
extracted the way an instrumentor sees it at the end of the call, then normalised by ``api``.
"""

from __future__ import annotations

import ast
import base64
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llmtally import usage
from llmtally.usage import Usage
from tests.conftest import real_payloads_path

FIXTURES = real_payloads_path()
FIXTURE_COUNT = 68


def _load() -> list[dict[str, Any]]:
    if not FIXTURES.is_file():
        return []
    with FIXTURES.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


RECORDS = _load()


# =====================================================================================================
# Payload extraction helpers: from a recorded HTTP body to the usage payload an instrumentor would hold.
# =====================================================================================================

Json = Any


def body_text(record: dict[str, Any]) -> str:
    assert record["body_encoding"] == "text", record["body_encoding"]
    return str(record["body"])


def body_json(record: dict[str, Any]) -> Json:
    return json.loads(body_text(record))


def sse_events(text: str) -> Iterator[tuple[str | None, Json]]:
    """(event name, decoded JSON data) of each server-sent event; ``[DONE]`` and non-JSON data skipped.

    Lines end in CRLF, LF or CR (the SSE spec; Gemini sends CRLF); a blank line ends an event and
    multi-line data is joined with LF. Not str.splitlines(): JSON may hold a raw U+2028.
    """
    name: str | None = None
    data: list[str] = []

    def dispatch() -> Iterator[tuple[str | None, Json]]:
        payload = "\n".join(data)
        if not payload or payload == "[DONE]":
            return
        try:
            decoded = json.loads(payload)
        except json.JSONDecodeError:
            return
        yield name, decoded

    for line in [*re.split(r"\r\n|\r|\n", text), ""]:
        if not line:
            yield from dispatch()
            name, data = None, []
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


def ndjson_lines(text: str) -> Iterator[Json]:
    for line in text.splitlines():
        if line.strip():
            yield json.loads(line)


def last(items: Iterator[Json] | list[Json], predicate: Callable[[Json], bool]) -> Json:
    found = [item for item in items if predicate(item)]
    assert found, "no chunk carries usage"
    return found[-1]


def aws_events(record: dict[str, Any], operation: str) -> list[dict[str, Any]]:
    """A binary AWS event stream parsed by botocore exactly as boto3 yields it (blobs base64-decoded)."""
    pytest.importorskip("botocore", reason="botocore is needed to decode AWS event streams")
    import botocore.session
    from botocore.eventstream import EventStream
    from botocore.parsers import EventStreamJSONParser

    assert record["body_encoding"] == "base64"
    data = base64.b64decode(record["body"])

    class Raw:
        def stream(self) -> Iterator[bytes]:
            yield data

        def close(self) -> None:
            pass

    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    output = model.operation_model(operation).output_shape
    member = output.serialization.get("payload") or next(iter(output.members))
    return list(EventStream(Raw(), output.members[member], EventStreamJSONParser(), operation))


def _has_openai_usage(chunk: Json) -> bool:
    return isinstance(chunk, dict) and (
        isinstance(chunk.get("usage"), dict) or isinstance((chunk.get("x_groq") or {}).get("usage"), dict)
    )


def openai_chat_payload(record: dict[str, Any]) -> Json:
    """Chat completions and OpenAI-compatible APIs: the body, or the last SSE chunk with usage
    (``usage``, or Groq's ``x_groq.usage``)."""
    if not record["stream"]:
        return body_json(record)
    return last((data for _, data in sse_events(body_text(record))), _has_openai_usage)


def openai_responses_payload(record: dict[str, Any]) -> Json:
    """Responses API: the body, or the response of the ``response.completed`` event."""
    if not record["stream"]:
        return body_json(record)
    completed = last(
        (data for _, data in sse_events(body_text(record))),
        lambda d: isinstance(d, dict) and d.get("type") == "response.completed",
    )
    return completed["response"]


def anthropic_payload(record: dict[str, Any]) -> Json:
    """Messages: the body, or message_start's usage merged with the last message_delta's (cumulative)."""
    if not record["stream"]:
        return body_json(record)
    events = [data for _, data in sse_events(body_text(record)) if isinstance(data, dict)]
    start = last(events, lambda d: d.get("type") == "message_start")["message"]["usage"]
    delta = last(events, lambda d: d.get("type") == "message_delta")["usage"]
    return usage.merge_anthropic_stream_usage(start, delta)


_GEMINI_COUNTS = ("promptTokenCount", "candidatesTokenCount", "totalTokenCount", "thoughtsTokenCount")


def gemini_payload(record: dict[str, Any]) -> Json:
    """generateContent: the body, or the last streamed chunk whose usageMetadata has counts (Vertex sends
    usageMetadata with only trafficType on intermediate chunks)."""
    if not record["stream"]:
        return body_json(record)
    return last(
        (data for _, data in sse_events(body_text(record))),
        lambda d: isinstance(d, dict) and any(k in (d.get("usageMetadata") or {}) for k in _GEMINI_COUNTS),
    )


def cohere_payload(record: dict[str, Any]) -> Json:
    """v1: body (``meta``) or the ``stream-end`` NDJSON event's response; v2: body (``usage``) or the
    ``message-end`` SSE event's delta."""
    if not record["stream"]:
        return body_json(record)
    if record["stream_format"] == "ndjson":
        end = last(ndjson_lines(body_text(record)), lambda d: d.get("event_type") == "stream-end")
        return end["response"]
    end = last(
        (data for _, data in sse_events(body_text(record))),
        lambda d: isinstance(d, dict) and d.get("type") == "message-end",
    )
    return end["delta"]


def ollama_payload(record: dict[str, Any]) -> Json:
    """The body, or the last NDJSON line with counts (the ``done`` one)."""
    if not record["stream"]:
        return body_json(record)
    return last(ndjson_lines(body_text(record)), lambda d: "eval_count" in d or "prompt_eval_count" in d)


def bedrock_converse_payload(record: dict[str, Any]) -> Json:
    """Converse: the body; ConverseStream: the ``metadata`` event."""
    if not record["stream"]:
        return body_json(record)
    events = aws_events(record, "ConverseStream")
    return last(events, lambda e: "metadata" in e)["metadata"]


def bedrock_invoke_payload(record: dict[str, Any]) -> Json:
    """invoke_model: the X-Amzn-Bedrock-*-Token-Count headers; its stream: the last chunk's
    ``amazon-bedrock-invocationMetrics`` (Bedrock's metering, preferred over the model's own usage)."""
    if not record["stream"]:
        return record["headers"]
    chunks = [json.loads(e["chunk"]["bytes"]) for e in aws_events(record, "InvokeModelWithResponseStream")
              if "chunk" in e]
    return last(chunks, lambda c: "amazon-bedrock-invocationMetrics" in c)["amazon-bedrock-invocationMetrics"]


def _from_headers(headers: Json) -> Usage:
    got = usage.from_bedrock_headers(headers)
    assert got is not None, "no X-Amzn-Bedrock-*-Token-Count headers"
    return got


def _bedrock_invoke(record: dict[str, Any], payload: Json) -> Usage:
    return _from_headers(payload) if not record["stream"] else usage.from_bedrock_invocation_metrics(payload)


Extractor = Callable[[dict[str, Any]], Json]
Normaliser = Callable[[dict[str, Any], Json], Usage]


def _plain(normalise: Callable[[Any], Usage]) -> Normaliser:
    return lambda _record, payload: normalise(payload)


# api -> (extract the usage payload, normalise it)
HANDLERS: dict[str, tuple[Extractor, Normaliser]] = {
    "openai.chat": (openai_chat_payload, _plain(usage.from_openai_chat)),
    "openai.completions": (openai_chat_payload, _plain(usage.from_openai_chat)),
    "azure.chat": (openai_chat_payload, _plain(usage.from_openai_chat)),
    "groq.chat": (openai_chat_payload, _plain(usage.from_openai_chat)),
    "compat.chat": (openai_chat_payload, _plain(usage.from_openai_chat)),
    "mistral.chat": (openai_chat_payload, _plain(usage.from_mistral)),
    "openai.embeddings": (body_json, _plain(usage.from_openai_embeddings)),
    "azure.embeddings": (body_json, _plain(usage.from_openai_embeddings)),
    "mistral.embeddings": (body_json, _plain(usage.from_mistral)),
    "openai.responses": (openai_responses_payload, _plain(usage.from_openai_responses)),
    "anthropic.messages": (anthropic_payload, _plain(usage.from_anthropic)),
    "gemini.generate_content": (gemini_payload, _plain(usage.from_google_genai)),
    "vertex.generate_content": (gemini_payload, _plain(usage.from_google_genai)),
    "bedrock.converse": (bedrock_converse_payload, _plain(usage.from_bedrock_converse)),
    "bedrock.converse_stream": (bedrock_converse_payload, _plain(usage.from_bedrock_converse)),
    "bedrock.invoke": (bedrock_invoke_payload, _bedrock_invoke),
    "bedrock.invoke_stream": (bedrock_invoke_payload, _bedrock_invoke),
    "cohere.chat_v1": (cohere_payload, _plain(usage.from_cohere)),
    "cohere.chat_v2": (cohere_payload, _plain(usage.from_cohere)),
    "cohere.embed_v2": (cohere_payload, _plain(usage.from_cohere)),
    "ollama.chat": (ollama_payload, _plain(usage.from_ollama)),
    "ollama.generate": (ollama_payload, _plain(usage.from_ollama)),
}


def normalise(record: dict[str, Any]) -> Usage:
    api = record["api"]
    assert api in HANDLERS, f"no extractor/normaliser for api {api!r}: add one to HANDLERS"
    extract, normalise_payload = HANDLERS[api]
    return normalise_payload(record, extract(record))


# =====================================================================================================
# Tests
# =====================================================================================================

# expected key -> Usage attribute; None values in `expected` mean "not reported", and are not compared.
EXPECTED_FIELDS = {
    "input_tokens": "input_tokens",
    "output_tokens": "output_tokens",
    "cache_read_input_tokens": "cache_read_tokens",
    "cache_creation_input_tokens": "cache_write_tokens",
    "cache_creation_5m_input_tokens": "cache_write_5m_tokens",
    "cache_creation_1h_input_tokens": "cache_write_1h_tokens",
    "reasoning_output_tokens": "reasoning_tokens",
}


def test_fixture_file_is_complete() -> None:
    assert FIXTURES.is_file(), f"missing {FIXTURES} (set LLMTALLY_REAL_PAYLOADS to its path)"
    assert len(RECORDS) == FIXTURE_COUNT
    assert len({r["id"] for r in RECORDS}) == FIXTURE_COUNT, "fixture ids must be unique"
    assert {r["api"] for r in RECORDS} <= set(HANDLERS), "every api needs a handler"
    for record in RECORDS:
        assert set(record["expected"]) <= {*EXPECTED_FIELDS, "notes"}, record["id"]


@pytest.mark.parametrize("record", RECORDS, ids=[f"{r['id']}-{r['api']}" for r in RECORDS])
def test_real_payload(record: dict[str, Any]) -> None:
    got = normalise(record)
    expected = record["expected"]
    mismatches = {
        key: (value, getattr(got, attr))
        for key, attr in EXPECTED_FIELDS.items()
        if (value := expected.get(key)) is not None and getattr(got, attr) != value
    }
    assert not mismatches, f"(expected, got) {mismatches}; notes: {expected.get('notes')}"
    assert expected["input_tokens"] is not None and expected["output_tokens"] is not None
    assert not got.clamped, "a real payload needed no correction"
    assert not got.estimated
    assert sum(got.leaves().values()) == got.input_tokens + got.output_tokens
    assert min(got.leaves().values()) >= 0


_BILLED = re.compile(r"billed_units (\{[^}]*\})")


@pytest.mark.parametrize(
    "record",
    [r for r in RECORDS if r["api"].startswith("cohere.")],
    ids=[f"{r['id']}-{r['api']}" for r in RECORDS if r["api"].startswith("cohere.")],
)
def test_cohere_billed_units(record: dict[str, Any]) -> None:
    # The notes quote the billed_units Cohere charges: they must reach billed_input/output_tokens.
    quoted = [m for note in record["expected"]["notes"] for m in _BILLED.findall(note)]
    assert len(quoted) == 1, record["expected"]["notes"]
    billed = ast.literal_eval(quoted[0])
    got = normalise(record)
    assert got.billed_input_tokens == billed.get("input_tokens", 0)
    assert got.billed_output_tokens == billed.get("output_tokens", 0)


@pytest.mark.parametrize(
    "record",
    [r for r in RECORDS if r["api"] == "bedrock.invoke"],
    ids=[f"{r['id']}-{r['api']}" for r in RECORDS if r["api"] == "bedrock.invoke"],
)
def test_bedrock_invoke_headers_agree_with_anthropic_body(record: dict[str, Any]) -> None:
    # Anthropic models on invoke_model return Anthropic's own usage in the body; Bedrock's metering
    # headers carry the same disjoint counts.
    body = body_json(record)
    assert "input_tokens" in body["usage"]
    assert usage.from_anthropic(body) == normalise(record)


@pytest.mark.parametrize(
    "record",
    [r for r in RECORDS if r["api"] == "bedrock.converse"],
    ids=[f"{r['id']}-{r['api']}" for r in RECORDS if r["api"] == "bedrock.converse"],
)
def test_bedrock_converse_boto3_form(record: dict[str, Any]) -> None:
    # boto3 hands users the body parsed by botocore against the service model: same Usage.
    pytest.importorskip("botocore", reason="botocore is needed to parse the boto3 form")
    import botocore.session
    from botocore.parsers import create_parser

    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    parsed = create_parser(model.protocol).parse(
        {"status_code": record["status"], "headers": record["headers"], "body": body_text(record).encode()},
        model.operation_model("Converse").output_shape,
    )
    assert usage.from_bedrock_converse(parsed) == normalise(record)


def test_sse_parser_handles_crlf_multiline_and_comments() -> None:
    text = 'event: a\r\ndata: {"x":\r\ndata: 1}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\ndata: {"y": 2}'
    assert list(sse_events(text)) == [("a", {"x": 1}), (None, {"y": 2})]
