"""The fake provider's Anthropic Messages wire format, driven by the REAL anthropic SDK (no llmtally
instrumentation): JSON and SSE replies, the stream helpers, tools, thinking, errors, cut streams,
count_tokens, and usage rendered in Anthropic's semantics (input EXCLUDES cache reads and writes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmtally.testing import FakeProvider

anthropic = pytest.importorskip("anthropic")
httpx2 = pytest.importorskip("httpx2")  # the anthropic SDK's HTTP client

MODEL = "claude-sonnet-4-6"
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "hi"}]
# semconv terms: input 1200 INCLUDES cache_read 1000 and cache_write 100 (60 of them with a 1-hour TTL);
# output 300 INCLUDES reasoning 50.
SEMCONV = {"input": 1200, "output": 300, "cache_read": 1000, "cache_write": 100, "cache_write_1h": 60}
HEADERS = {"X-Fake-Usage": json.dumps(SEMCONV)}
# the same counts in Anthropic's semantics, derived by hand
EXPECTED = {"input_tokens": 1200 - 1000 - 100, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 100,
            "output_tokens": 300}
EXPECTED_CACHE_CREATION = {"ephemeral_5m_input_tokens": 100 - 60, "ephemeral_1h_input_tokens": 60}


@pytest.fixture(autouse=True)
def _sdk_tracing_off(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # anthropic >= 2 traces its own calls into the global tracer provider unless this is "false"; the SDK
    # reads it when a client is constructed (anthropic/_tracing.py, env_open_telemetry).
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    yield


@pytest.fixture
def client(fake_provider: FakeProvider) -> Any:
    c = anthropic.Anthropic(base_url=fake_provider.anthropic_url, api_key="test", max_retries=0)
    assert c.open_telemetry["traces"]["enabled"] is False
    return c


@pytest.fixture
def aclient(fake_provider: FakeProvider) -> Any:
    return anthropic.AsyncAnthropic(base_url=fake_provider.anthropic_url, api_key="test", max_retries=0)


def assert_usage(usage: Any) -> None:
    got = {k: getattr(usage, k) for k in EXPECTED}
    assert got == EXPECTED
    assert usage.cache_creation.model_dump() == EXPECTED_CACHE_CREATION
    # the semconv total comes back when the cache counts are added to Anthropic's input_tokens
    assert usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens == SEMCONV["input"]


# --- non-stream -----------------------------------------------------------------------------------------

def test_create_json_message(client: Any, fake_provider: FakeProvider) -> None:
    message = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=HEADERS)
    assert isinstance(message, anthropic.types.Message)
    assert message.id.startswith("msg_fake") and message.type == "message" and message.role == "assistant"
    assert message.model == MODEL
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "This is a deterministic answer from the llmtally fake provider."
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert_usage(message.usage)
    assert message.usage.output_tokens_details is None  # no reasoning in this scenario
    request = fake_provider.requests[-1]
    assert request.path == "/v1/messages" and request.json["model"] == MODEL


def test_model_suffix_flags_are_not_echoed(client: Any) -> None:
    message = client.messages.create(model=f"{MODEL}@slow", max_tokens=64, messages=MESSAGES,
                                     extra_headers={"X-Fake-Delay": "0"})
    assert message.model == MODEL


def test_tool_use(client: Any) -> None:
    message = client.messages.create(model=f"{MODEL}@tools", max_tokens=64, messages=MESSAGES,
                                     tools=[{"name": "get_weather", "input_schema": {"type": "object"}}])
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.input == {"city": "Paris"}
    assert block.id.startswith("toolu_fake")


def test_thinking_block_and_thinking_tokens(client: Any) -> None:
    usage = {**SEMCONV, "reasoning": 50}
    message = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES,
                                     extra_headers={"X-Fake-Usage": json.dumps(usage)})
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking and message.content[0].signature
    assert message.usage.output_tokens == 300  # Anthropic's output includes thinking, as semconv's does
    assert message.usage.output_tokens_details.thinking_tokens == 50  # the SDK's OutputTokensDetails


def test_no_usage_and_malformed_usage(client: Any) -> None:
    message = client.messages.create(model=f"{MODEL}@no-usage", max_tokens=64, messages=MESSAGES)
    assert message.usage is None
    events = list(client.messages.create(model=f"{MODEL}@no-usage", max_tokens=64, messages=MESSAGES, stream=True))
    assert events[0].message.usage is None and events[-2].type == "message_delta" and events[-2].usage is None
    # the SDK does not validate responses: the wrong types come through as sent
    message = client.messages.create(model=f"{MODEL}@malformed-usage", max_tokens=64, messages=MESSAGES)
    assert isinstance(message.usage.input_tokens, str) and message.usage.output_tokens < 0
    assert message.usage.cache_read_input_tokens is None


def test_cost_flag_is_ignored(client: Any) -> None:
    message = client.messages.create(model=f"{MODEL}@cost", max_tokens=64, messages=MESSAGES, extra_headers=HEADERS)
    assert_usage(message.usage)
    assert "cost" not in message.usage.model_dump()


# --- streams --------------------------------------------------------------------------------------------

def test_create_stream_events(client: Any) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=HEADERS,
                                    stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    # the SDK drops the `ping` event
    assert kinds == ["message_start", "content_block_start", *["content_block_delta"] * 8, "content_block_stop",
                     "message_delta", "message_stop"]
    start, delta = events[0], events[-2]
    assert start.message.content == [] and start.message.stop_reason is None
    assert start.message.usage.output_tokens == 1  # a placeholder, as in real streams
    assert start.message.usage.input_tokens == EXPECTED["input_tokens"]
    assert start.message.usage.cache_read_input_tokens == EXPECTED["cache_read_input_tokens"]
    assert start.message.usage.cache_creation.model_dump() == EXPECTED_CACHE_CREATION
    assert delta.delta.stop_reason == "end_turn" and delta.delta.stop_sequence is None
    assert delta.usage.output_tokens == 300  # CUMULATIVE, not an increment over message_start's 1
    assert delta.usage.input_tokens == EXPECTED["input_tokens"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "This is a deterministic answer from the llmtally fake provider."


def test_raw_sse_frames_include_ping(fake_provider: FakeProvider) -> None:
    import urllib.request

    req = urllib.request.Request(f"{fake_provider.anthropic_url}/v1/messages", method="POST",
                                 data=json.dumps({"model": MODEL, "stream": True, "max_tokens": 8,
                                                  "messages": MESSAGES}).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read().decode()
        assert resp.headers["content-type"].startswith("text/event-stream")
    names = [line[len("event: "):] for line in body.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]


def test_stream_helper_text_stream_and_final_message(client: Any) -> None:
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=HEADERS) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 8
    assert "".join(pieces) == final.content[0].text
    assert final.stop_reason == "end_turn"
    assert_usage(final.usage)  # the accumulator overwrites output with message_delta's cumulative count
    assert final.usage.output_tokens == 300  # not 301 (message_start's 1 added), not doubled


def test_stream_helper_tools_and_thinking(client: Any) -> None:
    usage = {**SEMCONV, "reasoning": 50}
    with client.messages.stream(model=f"{MODEL}@tools", max_tokens=64, messages=MESSAGES,
                                extra_headers={"X-Fake-Usage": json.dumps(usage)}) as stream:
        assert list(stream.text_stream) == []
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    thinking, tool = final.content
    assert thinking.thinking == "Let me think about this step by step before answering." and thinking.signature
    assert tool.input == {"city": "Paris"} and tool.name == "get_weather"
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 300 and final.usage.output_tokens_details.thinking_tokens == 50


def test_cut_stream_raises(client: Any) -> None:
    stream = client.messages.create(model=f"{MODEL}@cut", max_tokens=64, messages=MESSAGES, stream=True)
    seen: list[str] = []
    # the SDK lets the HTTP client's error through (it is not wrapped in anthropic.APIConnectionError)
    with pytest.raises(httpx2.TransportError):
        for event in stream:
            seen.append(event.type)
    assert seen[0] == "message_start" and "message_stop" not in seen
    with pytest.raises(httpx2.TransportError), client.messages.stream(
            model=f"{MODEL}@cut", max_tokens=64, messages=MESSAGES) as helper:
        helper.get_final_message()


# --- errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "exc_name", "kind"), [
    (400, "BadRequestError", "invalid_request_error"),
    (429, "RateLimitError", "rate_limit_error"),
    (500, "InternalServerError", "api_error"),
])
def test_errors_use_anthropic_error_bodies(client: Any, status: int, exc_name: str, kind: str) -> None:
    with pytest.raises(getattr(anthropic, exc_name)) as info:
        client.messages.create(model=f"{MODEL}@error-{status}", max_tokens=64, messages=MESSAGES)
    err = info.value
    assert err.status_code == status
    assert err.body["type"] == "error" and err.body["error"]["type"] == kind
    assert err.type == kind  # the SDK reads the envelope's error type
    assert err.request_id and err.request_id.startswith("req_fake")


def test_error_on_a_stream_request(client: Any) -> None:
    with pytest.raises(anthropic.RateLimitError), client.messages.stream(
            model=f"{MODEL}@error-429", max_tokens=64, messages=MESSAGES) as stream:
        stream.get_final_message()


def test_bad_scenario_controls_are_an_anthropic_400(client: Any) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(model=f"{MODEL}@explode", max_tokens=64, messages=MESSAGES)
    assert "unknown fake scenario flags" in info.value.body["error"]["message"]


# --- count_tokens ---------------------------------------------------------------------------------------

def test_count_tokens(client: Any, fake_provider: FakeProvider) -> None:
    count = client.messages.count_tokens(model=MODEL, messages=MESSAGES, extra_headers=HEADERS)
    assert isinstance(count, anthropic.types.MessageTokensCount)
    assert count.input_tokens == SEMCONV["input"]
    assert fake_provider.requests[-1].path == "/v1/messages/count_tokens"


def test_routes_and_openai_side_by_side(fake_provider: FakeProvider) -> None:
    # /v1/messages is not swallowed by an OpenAI route, and the count_tokens route comes first
    found = fake_provider.route("POST", "/v1/messages")
    assert found is not None and found[0].handler.__module__ == "llmtally.testing.anthropic_wire"
    found = fake_provider.route("POST", "/v1/messages/count_tokens")
    assert found is not None and found[0].handler.__name__ == "count_tokens"
    found = fake_provider.route("POST", "/gateway/anthropic/v1/messages")  # any prefix
    assert found is not None and found[0].handler.__name__ == "messages"
    found = fake_provider.route("POST", "/v1/chat/completions")
    assert found is not None and found[0].handler.__module__ == "llmtally.testing.openai_wire"


# --- async ----------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_async_create_and_stream(aclient: Any) -> None:
    message = await aclient.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=HEADERS)
    assert_usage(message.usage)
    stream = await aclient.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, extra_headers=HEADERS,
                                           stream=True)
    events = [event async for event in stream]
    assert events[-2].type == "message_delta" and events[-2].usage.output_tokens == 300
    async with aclient.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES,
                                       extra_headers=HEADERS) as helper:
        pieces = [piece async for piece in helper.text_stream]
        final = await helper.get_final_message()
    assert "".join(pieces) == final.content[0].text
    assert_usage(final.usage)
    count = await aclient.messages.count_tokens(model=MODEL, messages=MESSAGES, extra_headers=HEADERS)
    assert count.input_tokens == 1200


@pytest.mark.anyio
async def test_async_errors_and_cut(aclient: Any) -> None:
    with pytest.raises(anthropic.RateLimitError):
        await aclient.messages.create(model=f"{MODEL}@error-429", max_tokens=64, messages=MESSAGES)
    with pytest.raises(anthropic.InternalServerError):
        await aclient.messages.create(model=f"{MODEL}@error-500", max_tokens=64, messages=MESSAGES)
    stream = await aclient.messages.create(model=f"{MODEL}@cut", max_tokens=64, messages=MESSAGES, stream=True)
    with pytest.raises(httpx2.TransportError):
        async for _ in stream:
            pass


# --- the SDK's own tracing, on a private tracer provider (documents what llmtally must not double count) ---

def test_sdk_builtin_span_on_a_private_tracer_provider(fake_provider: FakeProvider) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # an explicit option ignores ANTHROPIC_OPEN_TELEMETRY (set to "false" by the autouse fixture)
    traced = anthropic.Anthropic(base_url=fake_provider.anthropic_url, api_key="test", max_retries=0,
                                 open_telemetry={"tracer_provider": provider})
    usage = {**SEMCONV, "reasoning": 50}
    with traced.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES,
                                extra_headers={"X-Fake-Usage": json.dumps(usage)}) as stream:
        stream.get_final_message()
    (span,) = exporter.get_finished_spans()
    assert span.name == "anthropic.messages.create"
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name == "com.anthropic.sdk.python"
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.provider.name"] == "anthropic" and attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.usage.input_tokens"] == 1200  # semconv-inclusive: the SDK adds the cache counts
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert attrs["gen_ai.usage.cache_write.input_tokens"] == 100  # "cache_write", not semconv's "cache_creation"
    assert attrs["gen_ai.usage.output_tokens"] == 300 and attrs["gen_ai.usage.reasoning.output_tokens"] == 50
    # the span is current while the request is sent: its trace context went out in the headers
    assert fake_provider.requests[-1].headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")
