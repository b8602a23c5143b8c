"""The OpenAI instrumentor, driving the real ``openai`` SDK over loopback against the fake provider.

Every surface x sync/async x stream/non-stream: span name, kind, tokens, cost (hand-derived from the
published per-1M prices), status, and exactly one span per call.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmtally.testing import FakeProvider

openai = pytest.importorskip("openai")
pydantic = pytest.importorskip("pydantic")

pytestmark = pytest.mark.usefixtures("openai_instrumented")

D = Decimal
M = D(1_000_000)
USAGE = {"input": 1200, "output": 300, "cache_read": 1024, "reasoning": 200}
HEADERS = {"X-Fake-Usage": json.dumps(USAGE)}
MESSAGES = [{"role": "user", "content": "What is the answer?"}]

# Hand-derived costs of USAGE (1200 in, of which 1024 cached; 300 out, of which 200 reasoning):
# gpt-4o-mini: $0.15 input, $0.075 cached, $0.60 output -> 176*.15 + 1024*.075 + 300*.60 = 283.2 micro-USD
GPT_4O_MINI = (D(176) * D("0.15") + D(1024) * D("0.075") + D(300) * D("0.60")) / M
# o3 (since 2025-06-10): $2 input, $0.50 cached, $8 output -> 352 + 512 + 2400 = 3264 micro-USD
O3 = (D(176) * 2 + D(1024) * D("0.5") + D(300) * 8) / M
# gpt-3.5-turbo-instruct: $1.50 input, $2.00 output; legacy completions report no cache/reasoning details
INSTRUCT = (D(1200) * D("1.5") + D(300) * 2) / M
# text-embedding-3-small: $0.02 per 1M input tokens
EMBED = D(1200) * D("0.02") / M
# gpt-image-1: $5 text input, $40 image output per 1M
IMAGE = (D(1200) * 5 + D(300) * 40) / M


class Answer(pydantic.BaseModel):
    answer: str


ANSWER_HEADERS = {**HEADERS, "X-Fake-Text": '{"answer": "42"}'}


def one_span(spans: InMemorySpanExporter) -> ReadableSpan:
    finished = spans.get_finished_spans()
    assert len(finished) == 1, [s.name for s in finished]
    return finished[0]


def assert_call(span: ReadableSpan, *, name: str, operation: str, input_tokens: int, output_tokens: int,
                cost: Decimal, cache_read: int | None = None, reasoning: int | None = None,
                stream: bool = False) -> None:
    a = span.attributes or {}
    assert span.name == name
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.provider.name"] == "openai"
    assert a["server.address"] == "127.0.0.1"
    assert a["gen_ai.request.stream"] is stream
    assert a["gen_ai.usage.input_tokens"] == input_tokens
    assert a["gen_ai.usage.output_tokens"] == output_tokens
    assert a.get("gen_ai.usage.cache_read.input_tokens") == cache_read
    assert a.get("gen_ai.usage.reasoning.output_tokens") == reasoning
    assert a["llmtally.usage.estimated"] is False
    assert a["llmtally.cost.status"] == "priced"
    assert D(str(a["llmtally.cost.decimal"])) == cost
    assert a["gen_ai.usage.cost.amount"] == pytest.approx(float(cost), rel=1e-12)
    assert a["gen_ai.usage.cost.currency"] == "USD" and a["gen_ai.usage.cost.source"] == "local"


# --- surfaces -------------------------------------------------------------------------------------

def _sync_client(fake: FakeProvider) -> Any:
    return openai.OpenAI(base_url=fake.openai_url, api_key="test-key", max_retries=0)


def _async_client(fake: FakeProvider) -> Any:
    return openai.AsyncOpenAI(base_url=fake.openai_url, api_key="test-key", max_retries=0)


def chat_create(c: Any, stream: bool) -> Any:
    if stream:
        return list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                              stream_options={"include_usage": True}, extra_headers=HEADERS))
    return c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=HEADERS)


async def achat_create(c: Any, stream: bool) -> Any:
    if stream:
        s = await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}, extra_headers=HEADERS)
        return [chunk async for chunk in s]
    return await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=HEADERS)


def chat_parse(c: Any, stream: bool) -> Any:
    if stream:  # the stream helper with a response_format is the streaming form of parse
        with c.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, response_format=Answer,
                                       stream_options={"include_usage": True}, extra_headers=ANSWER_HEADERS) as s:
            for _ in s:
                pass
            final = s.get_final_completion()
        assert final.choices[0].message.parsed == Answer(answer="42")
        return final
    result = c.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Answer,
                                      extra_headers=ANSWER_HEADERS)
    assert result.choices[0].message.parsed == Answer(answer="42")
    return result


async def achat_parse(c: Any, stream: bool) -> Any:
    if stream:
        async with c.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, response_format=Answer,
                                             stream_options={"include_usage": True},
                                             extra_headers=ANSWER_HEADERS) as s:
            async for _ in s:
                pass
            final = await s.get_final_completion()
        assert final.choices[0].message.parsed == Answer(answer="42")
        return final
    result = await c.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Answer,
                                            extra_headers=ANSWER_HEADERS)
    assert result.choices[0].message.parsed == Answer(answer="42")
    return result


def chat_stream_helper(c: Any, stream: bool) -> Any:
    assert stream
    with c.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True},
                                   extra_headers=HEADERS) as s:
        text = "".join(e.delta for e in s if e.type == "content.delta")
        final = s.get_final_completion()
    assert final.choices[0].message.content == text
    return final


async def achat_stream_helper(c: Any, stream: bool) -> Any:
    assert stream
    async with c.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES,
                                         stream_options={"include_usage": True}, extra_headers=HEADERS) as s:
        async for _ in s:
            pass
        return await s.get_final_completion()


def responses_create(c: Any, stream: bool) -> Any:
    if stream:
        return list(c.responses.create(model="o3", input="What is the answer?", stream=True, extra_headers=HEADERS))
    return c.responses.create(model="o3", input="What is the answer?", extra_headers=HEADERS)


async def aresponses_create(c: Any, stream: bool) -> Any:
    if stream:
        s = await c.responses.create(model="o3", input="What is the answer?", stream=True, extra_headers=HEADERS)
        return [e async for e in s]
    return await c.responses.create(model="o3", input="What is the answer?", extra_headers=HEADERS)


def responses_stream_helper(c: Any, stream: bool) -> Any:
    assert stream
    with c.responses.stream(model="o3", input="What is the answer?", extra_headers=HEADERS) as s:
        s.until_done()
        return s.get_final_response()


async def aresponses_stream_helper(c: Any, stream: bool) -> Any:
    assert stream
    async with c.responses.stream(model="o3", input="What is the answer?", extra_headers=HEADERS) as s:
        await s.until_done()
        return await s.get_final_response()


def responses_parse(c: Any, stream: bool) -> Any:
    if stream:
        with c.responses.stream(model="o3", input="q", text_format=Answer, extra_headers=ANSWER_HEADERS) as s:
            s.until_done()
            result = s.get_final_response()
    else:
        result = c.responses.parse(model="o3", input="q", text_format=Answer, extra_headers=ANSWER_HEADERS)
    assert result.output_parsed == Answer(answer="42")
    return result


async def aresponses_parse(c: Any, stream: bool) -> Any:
    if stream:
        async with c.responses.stream(model="o3", input="q", text_format=Answer, extra_headers=ANSWER_HEADERS) as s:
            await s.until_done()
            result = await s.get_final_response()
    else:
        result = await c.responses.parse(model="o3", input="q", text_format=Answer, extra_headers=ANSWER_HEADERS)
    assert result.output_parsed == Answer(answer="42")
    return result


def completions_create(c: Any, stream: bool) -> Any:
    kw = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "extra_headers": HEADERS}
    if stream:
        return list(c.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    return c.completions.create(**kw)


async def acompletions_create(c: Any, stream: bool) -> Any:
    kw = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "extra_headers": HEADERS}
    if stream:
        s = await c.completions.create(stream=True, stream_options={"include_usage": True}, **kw)
        return [chunk async for chunk in s]
    return await c.completions.create(**kw)


def embeddings_create(c: Any, stream: bool) -> Any:
    return c.embeddings.create(model="text-embedding-3-small", input=["a", "b"], extra_headers=HEADERS)


async def aembeddings_create(c: Any, stream: bool) -> Any:
    return await c.embeddings.create(model="text-embedding-3-small", input=["a", "b"], extra_headers=HEADERS)


def images_generate(c: Any, stream: bool) -> Any:
    return c.images.generate(model="gpt-image-1", prompt="a cat", extra_headers=HEADERS)


async def aimages_generate(c: Any, stream: bool) -> Any:
    return await c.images.generate(model="gpt-image-1", prompt="a cat", extra_headers=HEADERS)


CHAT_EXPECT = {"name": "chat gpt-4o-mini", "operation": "chat", "input_tokens": 1200, "output_tokens": 300,
               "cache_read": 1024, "reasoning": 200, "cost": GPT_4O_MINI}
RESPONSES_EXPECT = {"name": "chat o3", "operation": "chat", "input_tokens": 1200, "output_tokens": 300,
                    "cache_read": 1024, "reasoning": 200, "cost": O3}
COMPLETIONS_EXPECT = {"name": "text_completion gpt-3.5-turbo-instruct", "operation": "text_completion",
                      "input_tokens": 1200, "output_tokens": 300, "cost": INSTRUCT}
EMBED_EXPECT = {"name": "embeddings text-embedding-3-small", "operation": "embeddings", "input_tokens": 1200,
                "output_tokens": 0, "cost": EMBED}
IMAGE_EXPECT = {"name": "image_generation gpt-image-1", "operation": "image_generation", "input_tokens": 1200,
                "output_tokens": 300, "cost": IMAGE}

Surface = tuple[str, Callable[[Any, bool], Any], Callable[[Any, bool], Awaitable[Any]], tuple[bool, ...], dict]
SURFACES: list[Surface] = [
    ("chat.completions.create", chat_create, achat_create, (False, True), CHAT_EXPECT),
    ("chat.completions.parse", chat_parse, achat_parse, (False, True), CHAT_EXPECT),
    ("chat.completions.stream", chat_stream_helper, achat_stream_helper, (True,), CHAT_EXPECT),
    ("responses.create", responses_create, aresponses_create, (False, True), RESPONSES_EXPECT),
    ("responses.stream", responses_stream_helper, aresponses_stream_helper, (True,), RESPONSES_EXPECT),
    ("responses.parse", responses_parse, aresponses_parse, (False, True), RESPONSES_EXPECT),
    ("completions.create", completions_create, acompletions_create, (False, True), COMPLETIONS_EXPECT),
    ("embeddings.create", embeddings_create, aembeddings_create, (False,), EMBED_EXPECT),
    ("images.generate", images_generate, aimages_generate, (False,), IMAGE_EXPECT),
]
CASES = [pytest.param(fn, afn, stream, expect, id=f"{name}-{'stream' if stream else 'json'}")
         for name, fn, afn, streams, expect in SURFACES for stream in streams]


@pytest.mark.parametrize(("fn", "afn", "stream", "expect"), CASES)
def test_sync_surface(fake_provider: FakeProvider, spans: InMemorySpanExporter, fn: Any, afn: Any, stream: bool,
                      expect: dict) -> None:
    fn(_sync_client(fake_provider), stream)
    assert_call(one_span(spans), stream=stream, **expect)


@pytest.mark.anyio
@pytest.mark.parametrize(("fn", "afn", "stream", "expect"), CASES)
async def test_async_surface(fake_provider: FakeProvider, spans: InMemorySpanExporter, fn: Any, afn: Any,
                             stream: bool, expect: dict) -> None:
    async with _async_client(fake_provider) as client:  # closed inside its event loop
        await afn(client, stream)
    assert_call(one_span(spans), stream=stream, **expect)


# --- raw and streaming responses ------------------------------------------------------------------

def test_with_raw_response_parse(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = _sync_client(fake_provider)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=HEADERS)
    assert raw.headers["content-type"] == "application/json"
    assert raw.parse().usage.prompt_tokens == 1200
    assert raw.parse() is raw.parse()  # the SDK's caching is preserved
    assert_call(one_span(spans), **CHAT_EXPECT)


def test_with_raw_response_stream(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = _sync_client(fake_provider)
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                      stream_options={"include_usage": True}, extra_headers=HEADERS)
    chunks = list(raw.parse())
    assert chunks[-1].usage.prompt_tokens == 1200
    assert_call(one_span(spans), stream=True, **CHAT_EXPECT)


def test_with_streaming_response_context(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = _sync_client(fake_provider)
    with c.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
            extra_headers=HEADERS) as response:
        assert response.http_response.status_code == 200
        for _ in response.parse():
            pass
    assert_call(one_span(spans), stream=True, **CHAT_EXPECT)


def test_with_streaming_response_read_as_json(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = _sync_client(fake_provider)
    with c.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES,
                                                           extra_headers=HEADERS) as response:
        body = response.json()  # never parse(): the body read is still accounted for on close
    assert body["usage"]["prompt_tokens"] == 1200
    assert_call(one_span(spans), **CHAT_EXPECT)


@pytest.mark.anyio
async def test_async_with_streaming_response(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    async with _async_client(fake_provider) as c, c.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
            extra_headers=HEADERS) as response:
        async for _ in await response.parse():
            pass
    assert_call(one_span(spans), stream=True, **CHAT_EXPECT)


@pytest.mark.anyio
async def test_async_with_raw_response(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    async with _async_client(fake_provider) as c:
        raw = await c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                extra_headers=HEADERS)
        assert raw.parse().usage.completion_tokens == 300
    assert_call(one_span(spans), **CHAT_EXPECT)


# --- request attributes, providers ----------------------------------------------------------------

def test_request_attributes(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    _sync_client(fake_provider).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=50, temperature=0.2, top_p=0.9, seed=7,
        stop=["END"], n=2, service_tier="flex", frequency_penalty=0.5, presence_penalty=0.1, extra_headers=HEADERS)
    a = one_span(spans).attributes or {}
    assert a["gen_ai.request.max_tokens"] == 50
    assert a["gen_ai.request.temperature"] == 0.2 and a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.seed"] == 7 and a["gen_ai.request.stop_sequences"] == ("END",)
    assert a["gen_ai.request.choice.count"] == 2
    assert a["openai.request.service_tier"] == "flex"
    assert a["openai.response.service_tier"] == "default"
    assert a["openai.api.type"] == "chat_completions"
    assert a["gen_ai.response.finish_reasons"] == ("stop", "stop")
    assert a["gen_ai.response.id"].startswith("chatcmpl-")


def test_the_served_tier_prices_the_call(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    # A priority request the API served at standard says "default" and is billed at the standard rate.
    # o3 standard: $2 / $8 per 1M (priority would be $3.50 / $14): 10,000 in + 1,000 out = 0.02 + 0.008.
    usage = {"X-Fake-Usage": json.dumps({"input": 10_000, "output": 1_000})}
    _sync_client(fake_provider).chat.completions.create(model="o3", messages=MESSAGES, service_tier="priority",
                                                        extra_headers=usage)
    a = one_span(spans).attributes or {}
    assert (a["openai.request.service_tier"], a["openai.response.service_tier"]) == ("priority", "default")
    assert Decimal(str(a["llmtally.cost.decimal"])) == Decimal("0.028")


def test_azure_client_is_azure_provider(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    client = openai.AzureOpenAI(azure_endpoint=fake_provider.azure_endpoint, api_key="k", api_version="2024-10-21",
                                max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=HEADERS)
    a = one_span(spans).attributes or {}
    assert a["gen_ai.provider.name"] == "azure.ai.openai"
    assert D(str(a["llmtally.cost.decimal"])) == GPT_4O_MINI  # Azure serves OpenAI's models at OpenAI's price
    assert fake_provider.requests[-1].path == "/openai/deployments/gpt-4o-mini/chat/completions"


@pytest.mark.parametrize(("host", "provider"), [
    ("api.openai.com", "openai"), ("myres.openai.azure.com", "azure.ai.openai"), ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"), ("openrouter.ai", "openrouter"), ("api.together.xyz", "together_ai"),
    ("api.fireworks.ai", "fireworks_ai"), ("api.x.ai", "x_ai"), ("api.mistral.ai", "mistral_ai"),
    ("localhost", "openai"), ("vllm.internal", "openai"), (None, "openai"),
])
def test_provider_from_host(host: str | None, provider: str) -> None:
    from llmtally.instrumentation.hosts import provider_for_host

    assert provider_for_host(host) == provider


def test_non_inference_requests_pass_through(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    with pytest.raises(openai.NotFoundError):
        _sync_client(fake_provider).models.list()
    assert spans.get_finished_spans() == ()


def test_suppressed_instrumentation_makes_no_span(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        chat_create(_sync_client(fake_provider), False)
    assert spans.get_finished_spans() == ()


def test_only_innermost_llm_span_carries_usage(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    # An outer llmtally call (as LiteLLM's instrumentor will create) around an OpenAI SDK call.
    from llmtally.instrumentation.call import Call
    from tests.conftest import TRACER_PROVIDER

    outer = Call(TRACER_PROVIDER.get_tracer("test"), provider="openai", operation="chat",
                 request_model="gpt-4o-mini", server_address=None, server_port=None, streaming=False)
    outer.enter()
    try:
        chat_create(_sync_client(fake_provider), False)
    finally:
        outer.exit()
    outer.finish(None)
    inner, outer_span = spans.get_finished_spans()
    assert (inner.attributes or {})["gen_ai.usage.input_tokens"] == 1200
    assert "gen_ai.usage.input_tokens" not in (outer_span.attributes or {})
    assert "gen_ai.usage.cost.amount" not in (outer_span.attributes or {})


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("scenario", "error"), [
    ("error-429", "RateLimitError"), ("error-500", "InternalServerError"), ("error-400", "BadRequestError"),
])
def test_rejected_request_is_an_error_with_exact_zero_usage(fake_provider: FakeProvider,
                                                            spans: InMemorySpanExporter, scenario: str,
                                                            error: str) -> None:
    with pytest.raises(getattr(openai, error)):
        _sync_client(fake_provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                            extra_headers={"X-Fake-Scenario": scenario})
    span = one_span(spans)
    a = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR
    assert a["error.type"] == error
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (0, 0)
    assert a["llmtally.usage.estimated"] is False
    assert D(str(a["llmtally.cost.decimal"])) == 0


def test_read_timeout_may_be_billed_so_it_is_estimated(fake_provider: FakeProvider,
                                                      spans: InMemorySpanExporter) -> None:
    # The request reached the provider and the client gave up waiting: the prompt may have been billed,
    # so the call is an estimate (flagged), never an exact $0 like a refused request.
    client = openai.OpenAI(base_url=fake_provider.openai_url, api_key="test-key", max_retries=0, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                       extra_headers={"X-Fake-Delay": "1.0"})
    span = one_span(spans)
    a = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "APITimeoutError"
    assert a["llmtally.usage.estimated"] is True
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] == 0
    assert a["llmtally.cost.status"] == "priced" and D(str(a["llmtally.cost.decimal"])) > 0


def test_connection_refused_is_an_exact_zero(spans: InMemorySpanExporter) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="test-key", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    a = one_span(spans).attributes or {}
    assert (a["gen_ai.usage.input_tokens"], a["llmtally.usage.estimated"]) == (0, False)


def test_stream_cut_mid_way_has_estimated_partial_usage(fake_provider: FakeProvider,
                                                        spans: InMemorySpanExporter) -> None:
    seen = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in _sync_client(fake_provider).chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True},
                extra_headers={"X-Fake-Scenario": "cut", "X-Fake-Chunks": "20", "X-Fake-Text": "abcd" * 20}):
            seen.append(chunk)
    span = one_span(spans)
    a = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "APIConnectionError"
    assert a["llmtally.usage.estimated"] is True
    streamed = "".join(c.choices[0].delta.content or "" for c in seen if c.choices)
    assert 0 < len(streamed) < 80
    assert a["gen_ai.usage.output_tokens"] == -(-len(streamed) // 4)  # the documented heuristic
    assert a["gen_ai.usage.input_tokens"] > 0


def test_stream_without_usage_is_estimated(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    text = "abcdefgh" * 10  # 80 ASCII characters -> 20 estimated output tokens
    chunks = list(_sync_client(fake_provider).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "abcd" * 5}], stream=True,
        extra_headers={"X-Fake-Text": text}))
    assert all(c.usage is None for c in chunks)
    a = one_span(spans).attributes or {}
    assert a["llmtally.usage.estimated"] is True
    assert a["gen_ai.usage.output_tokens"] == 20
    # prompt: 20 chars -> 5 tokens + 3 per message + 3 reply priming (heuristic; no tiktoken cache here)
    assert a["gen_ai.usage.input_tokens"] == 5 + 3 + 3
    # priced at gpt-4o-mini rates all the same: 11 * 0.15 + 20 * 0.60 per 1M
    assert D(str(a["llmtally.cost.decimal"])) == (D(11) * D("0.15") + D(20) * D("0.60")) / M


def test_non_stream_without_usage_is_estimated(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    _sync_client(fake_provider).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Fake-Scenario": "no-usage", "X-Fake-Text": "a" * 40})
    a = one_span(spans).attributes or {}
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 10


def test_malformed_usage_is_tolerated_and_counted(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    from llmtally.instrumentation._guard import malformed_payload_counts

    before = malformed_payload_counts().get("openai", 0)
    reply = _sync_client(fake_provider).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Fake-Scenario": "malformed-usage", **HEADERS})
    assert reply.choices[0].message.content
    a = one_span(spans).attributes or {}
    assert a["llmtally.usage.clamped"] is True
    assert a["gen_ai.usage.input_tokens"] == 1200 and a["gen_ai.usage.output_tokens"] == 0
    assert malformed_payload_counts()["openai"] == before + 1


def test_unknown_model_is_unpriced(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    _sync_client(fake_provider).chat.completions.create(model="my-local-llama", messages=MESSAGES,
                                                        extra_headers=HEADERS)
    a = one_span(spans).attributes or {}
    assert a["llmtally.cost.status"] == "unpriced"
    assert "gen_ai.usage.cost.amount" not in a and "llmtally.cost.decimal" not in a
    assert a["gen_ai.usage.input_tokens"] == 1200


def test_provider_returned_cost(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    usage = {"input": 100, "output": 10, "cost": 0.00123}
    _sync_client(fake_provider).chat.completions.create(model="anthropic/claude-3.5-sonnet", messages=MESSAGES,
                                                        extra_headers={"X-Fake-Usage": json.dumps(usage)})
    a = one_span(spans).attributes or {}
    assert a["gen_ai.usage.cost.source"] == "provider"
    assert a["llmtally.cost.decimal"] == "0.00123"


# --- content capture ------------------------------------------------------------------------------

def test_content_is_not_recorded_by_default(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    chat_create(_sync_client(fake_provider), True)
    a = one_span(spans).attributes or {}
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    assert not any("What is the answer" in str(v) for v in a.values())
    assert not any("test-key" in str(v) for v in a.values())  # nor the API key, ever


def test_content_capture_opt_in(fake_provider: FakeProvider, spans: InMemorySpanExporter,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    chunks = chat_create(_sync_client(fake_provider), True)
    a = one_span(spans).attributes or {}
    assert "What is the answer?" in str(a["gen_ai.input.messages"])
    assert a["gen_ai.output.messages"] == "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
