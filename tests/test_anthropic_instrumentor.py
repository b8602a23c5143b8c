"""The Anthropic instrumentor driving the real ``anthropic`` SDK against the fake provider."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmtally.testing import FakeProvider
from tests.conftest import GLOBAL_PIPELINE, TRACER_PROVIDER, run_scenario

anthropic = pytest.importorskip("anthropic")

D = Decimal
M = D(1_000_000)
MODEL = "claude-sonnet-4-5-20250929"
MESSAGES = [{"role": "user", "content": "What is the answer?"}]
# semconv terms: 12,000 input of which 10,000 cache reads and 1,500 cache writes (1,000 of them 1-hour);
# 600 output of which 200 thinking.
USAGE = {"input": 12_000, "output": 600, "cache_read": 10_000, "cache_write": 1_500, "cache_write_1h": 1_000,
         "reasoning": 200}
HEADERS = {"X-Fake-Usage": json.dumps(USAGE)}
# Claude Sonnet 4.5: $3 input, $3.75 5-minute cache write, $6 1-hour cache write, $0.30 cache read, $15 output.
COST = (D(500) * 3 + D(500) * D("3.75") + D(1_000) * 6 + D(10_000) * D("0.30") + D(600) * 15) / M


@pytest.fixture(scope="module", autouse=True)
def instrumented() -> Iterator[None]:
    from llmtally.instrumentation.anthropic import AnthropicInstrumentor

    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    instrumentor.uninstrument()


def client(fake: FakeProvider) -> Any:
    return anthropic.Anthropic(base_url=fake.anthropic_url, api_key="test-key", max_retries=0)


def only_ours(spans: InMemorySpanExporter) -> ReadableSpan:
    ours = [s for s in spans.get_finished_spans() if s.instrumentation_scope.name.startswith("llmtally")]
    assert len(ours) == 1, [s.name for s in spans.get_finished_spans()]
    return ours[0]


def assert_priced(span: ReadableSpan, stream: bool) -> None:
    a = span.attributes or {}
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert (a["gen_ai.provider.name"], a["gen_ai.request.stream"]) == ("anthropic", stream)
    # Anthropic's input_tokens (500) excludes cache reads and writes: semconv input adds them back.
    assert a["gen_ai.usage.input_tokens"] == 12_000
    assert a["gen_ai.usage.cache_read.input_tokens"] == 10_000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 1_500
    assert a["gen_ai.usage.output_tokens"] == 600  # message_delta's cumulative count, not start + delta
    assert a["llmtally.usage.estimated"] is False
    assert D(str(a["llmtally.cost.decimal"])) == COST


def test_messages_create(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    reply = client(fake_provider).messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES,
                                                  extra_headers=HEADERS)
    assert reply.usage.input_tokens == 500
    span = only_ours(spans)
    assert_priced(span, stream=False)
    assert (span.attributes or {})["gen_ai.request.max_tokens"] == 1024


def test_messages_create_stream(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    events = list(client(fake_provider).messages.create(model=MODEL, max_tokens=1024, messages=MESSAGES,
                                                        stream=True, extra_headers=HEADERS))
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert_priced(only_ours(spans), stream=True)


def test_messages_stream_helper(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    with client(fake_provider).messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES,
                                               extra_headers=HEADERS) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens == 600
    assert_priced(only_ours(spans), stream=True)


@pytest.mark.anyio
async def test_async_create_and_stream(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    async with anthropic.AsyncAnthropic(base_url=fake_provider.anthropic_url, api_key="k", max_retries=0) as ac:
        await ac.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers=HEADERS)
        assert_priced(only_ours(spans), stream=False)
        spans.clear()
        async with ac.messages.stream(model=MODEL, max_tokens=10, messages=MESSAGES, extra_headers=HEADERS) as s:
            async for _ in s.text_stream:
                pass
            await s.get_final_message()
        assert_priced(only_ours(spans), stream=True)


def test_with_raw_response(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    raw = client(fake_provider).messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MESSAGES,
                                                                  extra_headers=HEADERS)
    assert raw.parse().usage.cache_read_input_tokens == 10_000
    assert_priced(only_ours(spans), stream=False)


def test_rejected_request(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    with pytest.raises(anthropic.RateLimitError):
        client(fake_provider).messages.create(model=MODEL, max_tokens=10, messages=MESSAGES,
                                              extra_headers={"X-Fake-Scenario": "error-429"})
    span = only_ours(spans)
    a = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "RateLimitError"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (0, 0)


def test_stream_break_then_gc_ends_once(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    import gc

    stream = client(fake_provider).messages.create(model=MODEL, max_tokens=10, messages=MESSAGES, stream=True,
                                                   extra_headers=HEADERS)
    for _ in stream:
        break
    del stream
    gc.collect()
    a = only_ours(spans).attributes or {}
    assert a["llmtally.usage.estimated"] is True  # message_delta (the final count) never arrived


def test_count_tokens_is_not_a_billed_call(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    result = client(fake_provider).messages.count_tokens(model=MODEL, messages=MESSAGES, extra_headers=HEADERS)
    assert result.input_tokens > 0
    assert not [s for s in spans.get_finished_spans() if s.instrumentation_scope.name.startswith("llmtally")]


def test_bedrock_and_vertex_clients_report_their_providers() -> None:
    from llmtally.instrumentation.anthropic import _provider

    bedrock = anthropic.AnthropicBedrock(aws_region="us-east-1", aws_access_key="a", aws_secret_key="b")
    vertex = anthropic.AsyncAnthropicVertex(region="us-east5", project_id="p", access_token="t")
    plain = anthropic.Anthropic(api_key="k")
    assert _provider(bedrock, bedrock.base_url.host) == "aws.bedrock"
    assert _provider(vertex, vertex.base_url.host) == "gcp.vertex_ai"
    assert _provider(plain, plain.base_url.host) == "anthropic"
    assert _provider(plain, "127.0.0.1") == "anthropic"  # an unknown host: still Anthropic's wire


SDK_TRACING_SCENARIO = GLOBAL_PIPELINE + """
import json, sys, anthropic
from llmtally.instrumentation.anthropic import AnthropicInstrumentor
AnthropicInstrumentor().instrument(tracer_provider=provider)
client = anthropic.Anthropic(base_url=sys.argv[1], api_key="k", max_retries=0)
headers = {"X-Fake-Usage": sys.argv[2]}
client.messages.create(model="claude-sonnet-4-5-20250929", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                       extra_headers=headers)
with client.messages.stream(model="claude-sonnet-4-5-20250929", max_tokens=10,
                            messages=[{"role": "user", "content": "hi"}], extra_headers=headers) as s:
    s.get_final_message()
spans = exporter.get_finished_spans()
by_id = {s.context.span_id: s for s in spans}
records = pipeline.records()
print(json.dumps({
    "scopes": sorted(s.instrumentation_scope.name for s in spans),
    "sdk_parents": sorted(by_id[s.parent.span_id].instrumentation_scope.name
                          for s in spans if s.instrumentation_scope.name == "com.anthropic.sdk.python"),
    "records": len(records),
    "costs": [r.attributes["llmtally.cost.decimal"] for r in records],
}))
"""


def test_with_the_sdks_own_tracing_on_a_call_counts_once(fake_provider: FakeProvider) -> None:
    """anthropic >= 2 traces itself by default (ANTHROPIC_OPEN_TELEMETRY unset): its span nests under
    llmtally's and the usage processor counts the call once."""
    result = run_scenario(SDK_TRACING_SCENARIO, fake_provider.anthropic_url, json.dumps(USAGE),
                          drop_env=("ANTHROPIC_",))
    assert result["scopes"].count("com.anthropic.sdk.python") == 2, result  # the SDK's own spans are kept
    assert result["sdk_parents"] == ["llmtally.instrumentation.anthropic"] * 2  # nested under ours
    assert result["records"] == 2 and [D(c) for c in result["costs"]] == [COST, COST]  # counted once each
