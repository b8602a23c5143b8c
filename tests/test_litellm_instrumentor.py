"""The LiteLLM instrumentor driving real ``litellm`` against the fake provider on 127.0.0.1: its OpenAI route
(litellm calls the openai SDK) and its Anthropic route (litellm's own httpx client), sync, async, streams,
errors, and the call counted once with and without the OpenAI instrumentor underneath."""

from __future__ import annotations

import gc
import json
import os
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmtally.testing import FakeProvider
from tests.conftest import (
    TRACER_PROVIDER,
    assert_rejected,
    attrs,
    cost,
    make_pipeline,
    only_span,
    real_payloads,
    run_scenario,
    serve_recording,
)

# litellm fetches its model cost map (and, on the Anthropic route, a beta-headers file) over the network
# unless told not to: before it is imported.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS", "True")
litellm = pytest.importorskip("litellm")
# litellm's own use of pydantic (model_response_utils.py): not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")

D = Decimal
M = D(1_000_000)
MESSAGES = [{"role": "user", "content": "What is the answer?"}]
OPENAI_MODEL, ANTHROPIC_MODEL, EMBED_MODEL = "gpt-4o-mini", "claude-3-5-haiku-20241022", "text-embedding-3-small"
TEXT = "This is a deterministic answer from the llmtally fake provider."  # 63 ASCII characters: 16 tokens
# semconv terms: 12,000 input tokens of which 4,000 cache reads and 1,000 cache writes (400 of them 1-hour),
# 800 output tokens.
USAGE = {"input": 12_000, "output": 800, "cache_read": 4_000, "cache_write": 1_000, "cache_write_1h": 400}
HEADERS = {"X-Fake-Usage": json.dumps(USAGE)}
# gpt-4o-mini, OpenAI's published price per 1M: $0.15 input (cache writes are plain input), $0.075 cached, $0.60
# output. OpenAI has no 1-hour cache writes: its wire carries cache_write_tokens only.
OPENAI_COST = (D(7_000) * D("0.15") + D(4_000) * D("0.075") + D(1_000) * D("0.15") + D(800) * D("0.60")) / M
# Claude 3.5 Haiku, Anthropic's published price per 1M: $0.80 input, $0.08 cache read, $1.00 5-minute and
# $1.60 1-hour cache write, $4 output.
ANTHROPIC_COST = (D(7_000) * D("0.80") + D(4_000) * D("0.08") + D(600) * D("1.00") + D(400) * D("1.60")
                  + D(800) * D(4)) / M
# text-embedding-3-small: $0.02 per 1M input tokens.
EMBED_COST = D(12_000) * D("0.02") / M


@pytest.fixture(scope="module", autouse=True)
def instrumented() -> Iterator[None]:
    from llmtally.instrumentation.litellm import LiteLLMInstrumentor

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    saved = (litellm.callbacks, litellm.success_callback, litellm.failure_callback)
    litellm.callbacks, litellm.success_callback, litellm.failure_callback = [], [], []
    instrumentor = LiteLLMInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    instrumentor.uninstrument()
    litellm.callbacks, litellm.success_callback, litellm.failure_callback = saved


def _openai_instrumentor() -> Any:
    from llmtally.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor()


@pytest.fixture(autouse=True)
def openai_off(request: pytest.FixtureRequest) -> Iterator[None]:
    """litellm alone, unless a test asks for ``openai_on``: another module's session fixture may have left
    the OpenAI instrumentor on; it gets it back afterwards."""
    if "openai_on" in request.fixturenames:
        yield
        return
    instrumentor = _openai_instrumentor()
    was_on = instrumentor.is_instrumented_by_opentelemetry
    if was_on:
        instrumentor.uninstrument()
    yield
    if was_on:
        instrumentor.instrument(tracer_provider=TRACER_PROVIDER)


@pytest.fixture
def openai_on() -> Iterator[None]:
    instrumentor = _openai_instrumentor()
    was_on = instrumentor.is_instrumented_by_opentelemetry
    if not was_on:
        instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    if not was_on:
        instrumentor.uninstrument()


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every test: nothing but 127.0.0.1 is resolved or connected to (litellm, aiohttp and the SDKs alike)."""
    attempts: list[Any] = []
    connect, resolve = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"):
            attempts.append(address)
            raise OSError("llmtally tests: no network beyond loopback")
        return connect(self, address)

    def guarded_resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "::1", "localhost", None):
            attempts.append(host)
            raise socket.gaierror("llmtally tests: no network beyond loopback")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_resolve)
    yield attempts
    assert attempts == []


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider() as provider:
        yield provider


def openai_kwargs(fake: FakeProvider, **headers: str) -> dict[str, Any]:
    return {"model": f"openai/{OPENAI_MODEL}", "messages": MESSAGES, "api_base": fake.openai_url, "api_key": "k",
            "extra_headers": {**HEADERS, **headers}, "max_retries": 0}


def anthropic_kwargs(fake: FakeProvider, **headers: str) -> dict[str, Any]:
    return {"model": f"anthropic/{ANTHROPIC_MODEL}", "messages": MESSAGES, "api_base": fake.anthropic_url,
            "api_key": "k", "max_tokens": 1000, "extra_headers": {**HEADERS, **headers}}


def embed_kwargs(fake: FakeProvider, **headers: str) -> dict[str, Any]:
    return {"model": f"openai/{EMBED_MODEL}", "input": ["a", "b"], "api_base": fake.openai_url, "api_key": "k",
            "extra_headers": {**HEADERS, **headers}}


def assert_priced(span: ReadableSpan, fake: FakeProvider, route: str, stream: bool) -> None:
    a = attrs(span)
    model = OPENAI_MODEL if route == "openai" else ANTHROPIC_MODEL
    assert span.name == f"chat {model}" and span.kind is SpanKind.CLIENT  # litellm's "openai/" prefix dropped
    assert span.status.status_code is StatusCode.UNSET
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("chat", route,
                                                                                                   model)
    assert (a["server.address"], a["server.port"], a["gen_ai.request.stream"]) == ("127.0.0.1", fake.port, stream)
    assert a["gen_ai.response.model"] == model and isinstance(a["gen_ai.response.id"], str)
    # Semconv-inclusive: cache reads and writes are part of the 12,000 input tokens on both routes (the
    # Anthropic wire says input_tokens 7,000; litellm adds the cache counts, so must not we).
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12_000, 800)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 4_000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 1_000
    assert a["llmtally.usage.estimated"] is False and a["llmtally.cost.status"] == "priced"
    assert cost(a) == (OPENAI_COST if route == "openai" else ANTHROPIC_COST)
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert ("gen_ai.response.time_to_first_chunk" in a) is stream
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # content is opt-in


# --- chat, sync and async, both routes ---------------------------------------------------------------------

@pytest.mark.parametrize("route", ["openai", "anthropic"])
def test_completion(fake: FakeProvider, spans: InMemorySpanExporter, route: str) -> None:
    kwargs = openai_kwargs(fake) if route == "openai" else anthropic_kwargs(fake)
    seed = {"seed": 7} if route == "openai" else {}  # litellm refuses a seed for Anthropic
    response = litellm.completion(**kwargs, temperature=0.3, top_p=0.9, stop=["END"], **seed)
    assert response.choices[0].message.content == TEXT and response.usage.prompt_tokens == 12_000
    span = only_span(spans)
    assert_priced(span, fake, route, stream=False)
    a = attrs(span)
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_p"]) == (0.3, 0.9)
    assert a["gen_ai.request.stop_sequences"] == ("END",) and a.get("gen_ai.request.seed") == seed.get("seed")


@pytest.mark.parametrize("route", ["openai", "anthropic"])
def test_completion_stream(fake: FakeProvider, spans: InMemorySpanExporter, route: str) -> None:
    # The OpenAI route reports stream usage only when asked; litellm strips it from the chunks it hands out
    # (Anthropic's message_start / message_delta usage), except the include_usage chunk at the end.
    kwargs = openai_kwargs(fake) if route == "openai" else anthropic_kwargs(fake)
    chunks = list(litellm.completion(**kwargs, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-1].usage.prompt_tokens == 12_000  # what the app asked for is still there
    assert_priced(only_span(spans), fake, route, stream=True)
    spans.clear()
    if route == "anthropic":  # without include_usage too: the usage litellm kept for itself is read
        assert all(getattr(c, "usage", None) is None for c in litellm.completion(**kwargs, stream=True))
        assert_priced(only_span(spans), fake, route, stream=True)


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_acompletion_and_stream(fake: FakeProvider, spans: InMemorySpanExporter, route: str) -> None:
    kwargs = openai_kwargs(fake) if route == "openai" else anthropic_kwargs(fake)
    response = await litellm.acompletion(**kwargs)
    assert response.choices[0].message.content == TEXT
    assert_priced(only_span(spans), fake, route, stream=False)
    spans.clear()
    stream = await litellm.acompletion(**kwargs, stream=True, stream_options={"include_usage": True})
    text = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(text) == TEXT
    assert_priced(only_span(spans), fake, route, stream=True)


def test_next_by_hand(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    stream = litellm.completion(**anthropic_kwargs(fake), stream=True)
    pieces = []
    while True:
        try:
            pieces.append(next(stream).choices[0].delta.content or "")
        except StopIteration:
            break
    assert "".join(pieces) == TEXT
    assert_priced(only_span(spans), fake, "anthropic", stream=True)


def test_uninstrument_and_instrument_again(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    import wrapt

    from llmtally.instrumentation.litellm import LiteLLMInstrumentor

    bound = litellm.completion  # as `from litellm import completion` would keep it
    LiteLLMInstrumentor().uninstrument()
    try:
        assert not isinstance(litellm.completion, wrapt.ObjectProxy)
        assert not isinstance(litellm.main.completion, wrapt.ObjectProxy)
        litellm.completion(**anthropic_kwargs(fake))
        bound(**anthropic_kwargs(fake))
        assert spans.get_finished_spans() == ()
    finally:
        LiteLLMInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)  # litellm is imported: wrapped at once
    litellm.completion(**anthropic_kwargs(fake))
    assert_priced(only_span(spans), fake, "anthropic", stream=False)


def test_router(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """The Router looks litellm.completion / acompletion up at call time: its calls are the wrapped ones."""
    import asyncio

    router = litellm.Router(model_list=[{"model_name": "fast", "litellm_params": {
        "model": f"anthropic/{ANTHROPIC_MODEL}", "api_base": fake.anthropic_url, "api_key": "k"}}])
    router.completion(model="fast", messages=MESSAGES, max_tokens=1000, extra_headers=HEADERS)
    asyncio.run(router.acompletion(model="fast", messages=MESSAGES, max_tokens=1000, extra_headers=HEADERS))
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    for span in finished:
        assert_priced(span, fake, "anthropic", stream=False)


# --- a lazy stream: litellm's Gemini route sends the request on the first pull ---------------------------------

GEMINI_USAGE = {"input": 1_200, "output": 300, "cache_read": 200, "reasoning": 50}
# gemini-2.0-flash, Google's published price per 1M: $0.10 input, $0.025 cached, $0.40 output (thinking too).
GEMINI_COST = (D(1_000) * D("0.10") + D(200) * D("0.025") + D(300) * D("0.40")) / M


def gemini_kwargs(fake: FakeProvider, **headers: str) -> dict[str, Any]:
    return {"model": "gemini/gemini-2.0-flash", "messages": MESSAGES, "api_base": fake.gemini_url, "api_key": "k",
            "stream": True, "extra_headers": {"X-Fake-Usage": json.dumps(GEMINI_USAGE), **headers}}


def test_lazy_stream_request_is_sent_inside_the_call(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """The first pull runs with litellm's span current: an HTTP span of the lazy request nests under it (and
    inner llmtally instrumentations see the call active)."""
    httpx_instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
    instrumentor = httpx_instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    try:
        stream = litellm.completion(**gemini_kwargs(fake))
        assert fake.requests == []  # nothing sent yet
        text = "".join(c.choices[0].delta.content or "" for c in stream)
    finally:
        instrumentor.uninstrument()
    assert text == TEXT and len(fake.requests) == 1
    by_scope = {s.instrumentation_scope.name: s for s in spans.get_finished_spans()}
    ours, http = by_scope["llmtally.instrumentation.litellm"], by_scope["opentelemetry.instrumentation.httpx"]
    assert http.parent is not None and http.parent.span_id == ours.context.span_id
    a = attrs(ours)
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("gcp.gemini", "gemini-2.0-flash")
    # litellm adds Gemini's thoughts to completion_tokens: 300 output tokens, 50 of them reasoning.
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1_200, 300)
    assert (a["gen_ai.usage.cache_read.input_tokens"], a["gen_ai.usage.reasoning.output_tokens"]) == (200, 50)
    assert a["llmtally.usage.estimated"] is False and cost(a) == GEMINI_COST


def test_lazy_stream_rejected_on_the_first_pull(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    stream = litellm.completion(**gemini_kwargs(fake, **{"X-Fake-Scenario": "error-429"}))
    assert spans.get_finished_spans() == ()  # no request yet, no outcome yet
    with pytest.raises(litellm.exceptions.MidStreamFallbackError) as raised:  # litellm's wrapping, as without us
        next(stream)
    assert raised.value.status_code == 429 and raised.value.is_pre_first_chunk
    assert_rejected(only_span(spans), "MidStreamFallbackError")


@pytest.mark.anyio
async def test_async_lazy_stream(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    stream = await litellm.acompletion(**gemini_kwargs(fake))
    assert "".join([c.choices[0].delta.content or "" async for c in stream]) == TEXT
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is False and cost(a) == GEMINI_COST


# --- embeddings ---------------------------------------------------------------------------------------------

def assert_embed_priced(span: ReadableSpan) -> None:
    a = attrs(span)
    assert span.name == f"embeddings {EMBED_MODEL}"
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"]) == ("embeddings", "openai")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12_000, 0)
    assert a["gen_ai.request.encoding_formats"] == ("float",)
    assert a["llmtally.usage.estimated"] is False and cost(a) == EMBED_COST


def test_embedding(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = litellm.embedding(**embed_kwargs(fake), encoding_format="float")
    assert len(response.data) == 2
    assert_embed_priced(only_span(spans))


@pytest.mark.anyio
async def test_aembedding(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = await litellm.aembedding(**embed_kwargs(fake), encoding_format="float")
    assert len(response.data) == 2
    assert_embed_priced(only_span(spans))  # aembedding's inner embedding(aembedding=True) is not a second call


# --- counted once: litellm over the openai SDK, with and without the OpenAI instrumentor --------------------

def run_counted(fake: FakeProvider, kind: str) -> None:
    import asyncio

    if kind == "sync":
        litellm.completion(**openai_kwargs(fake))
    elif kind == "stream":
        list(litellm.completion(**openai_kwargs(fake), stream=True, stream_options={"include_usage": True}))
    elif kind == "async-stream":
        async def run() -> None:
            async for _ in await litellm.acompletion(**openai_kwargs(fake), stream=True,
                                                     stream_options={"include_usage": True}):
                pass

        asyncio.run(run())
    else:
        litellm.completion(**anthropic_kwargs(fake))


def assert_counted_once(pipeline: Any, expected_cost: Decimal) -> None:
    records = pipeline.records()
    assert len(records) == 1, records
    assert D(str(records[0].attributes["llmtally.cost.decimal"])) == expected_cost
    tokens = pipeline.metric_points("gen_ai.client.token.usage")
    assert sorted((p.attributes["gen_ai.token.type"], p.count, p.sum) for p in tokens) == [
        ("input", 1, 12_000), ("output", 1, 800)]
    (duration,) = pipeline.metric_points("gen_ai.client.operation.duration")
    assert duration.count == 1
    (spend,) = pipeline.metric_points("gen_ai.client.operation.cost")
    assert spend.count == 1 and D(str(spend.sum)).quantize(D("1e-12")) == expected_cost.quantize(D("1e-12"))


@pytest.mark.parametrize("kind", ["sync", "stream", "async-stream", "anthropic"])
def test_counted_once_with_the_openai_instrumentor(fake: FakeProvider, spans: InMemorySpanExporter, openai_on: None,
                                                   kind: str) -> None:
    pipeline = make_pipeline()
    try:
        run_counted(fake, kind)
        assert_counted_once(pipeline, ANTHROPIC_COST if kind == "anthropic" else OPENAI_COST)
    finally:
        pipeline.processor.shutdown()
    by_scope = {s.instrumentation_scope.name: s for s in spans.get_finished_spans()}
    outer = by_scope["llmtally.instrumentation.litellm"]
    if kind == "anthropic":  # litellm's own HTTP client: nothing underneath
        assert len(spans.get_finished_spans()) == 1 and attrs(outer)["gen_ai.usage.input_tokens"] == 12_000
        return
    inner = by_scope["llmtally.instrumentation.openai"]
    assert len(spans.get_finished_spans()) == 2
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert attrs(inner)["gen_ai.usage.input_tokens"] == 12_000 and cost(attrs(inner)) == OPENAI_COST
    # The delegated outer span keeps its request and response attributes but carries no usage nor cost.
    assert attrs(outer)["gen_ai.request.model"] == OPENAI_MODEL
    assert not [k for k in attrs(outer) if k.startswith(("gen_ai.usage", "llmtally.cost", "gen_ai.usage.cost"))]


@pytest.mark.parametrize("kind", ["sync", "stream", "async-stream"])
def test_counted_once_without_the_openai_instrumentor(fake: FakeProvider, spans: InMemorySpanExporter,
                                                      kind: str) -> None:
    pipeline = make_pipeline()
    try:
        run_counted(fake, kind)
        assert_counted_once(pipeline, OPENAI_COST)
    finally:
        pipeline.processor.shutdown()
    assert only_span(spans).instrumentation_scope.name == "llmtally.instrumentation.litellm"


@pytest.mark.parametrize("kind", ["sync", "stream", "async", "async-stream"])
def test_counted_once_with_the_httpx_fallback(fake: FakeProvider, spans: InMemorySpanExporter, kind: str) -> None:
    """litellm's Anthropic route sends with its own httpx client, which the httpx fallback instruments too:
    it must see litellm's call active, also when litellm sends a stream's request on the first pull."""
    import asyncio

    fallback_module = pytest.importorskip("llmtally.instrumentation.httpx_fallback")
    fallback = fallback_module.HttpxInstrumentor()
    fallback.instrument(tracer_provider=TRACER_PROVIDER)
    pipeline = make_pipeline()
    try:
        if kind == "sync":
            litellm.completion(**anthropic_kwargs(fake))
        elif kind == "stream":
            list(litellm.completion(**anthropic_kwargs(fake), stream=True))
        else:
            async def run() -> None:
                if kind == "async":
                    await litellm.acompletion(**anthropic_kwargs(fake))
                else:
                    async for _ in await litellm.acompletion(**anthropic_kwargs(fake), stream=True):
                        pass

            asyncio.run(run())
        assert_counted_once(pipeline, ANTHROPIC_COST)
    finally:
        pipeline.processor.shutdown()
        fallback.uninstrument()
    assert [s.instrumentation_scope.name for s in spans.get_finished_spans()] == ["llmtally.instrumentation.litellm"]


def test_raw_response_dropped_while_its_stream_lives(fake: FakeProvider, spans: InMemorySpanExporter,
                                                     openai_on: None) -> None:
    """What litellm does with the openai SDK: keep ``with_raw_response.create(stream=True).parse()`` and drop
    the raw response. Its garbage collection must not end the call the stream still owns."""
    import openai

    client = openai.OpenAI(base_url=fake.openai_url, api_key="k", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True,
                                                           stream_options={"include_usage": True},
                                                           extra_headers=HEADERS)
    stream = raw.parse()
    del raw
    gc.collect()
    assert spans.get_finished_spans() == ()
    list(stream)
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is False and cost(a) == OPENAI_COST


# --- missing usage, cache hits, mock responses ---------------------------------------------------------------

def test_missing_usage_is_estimated_not_zero(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """litellm answers a response without usage with prompt/completion tokens 0: that is no count."""
    response = litellm.completion(**openai_kwargs(fake, **{"X-Fake-Scenario": "no-usage"}))
    assert response.usage.prompt_tokens == 0
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True
    assert a["gen_ai.usage.output_tokens"] == 16 and a["gen_ai.usage.input_tokens"] > 0


def test_stream_without_usage_is_estimated(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    list(litellm.completion(**openai_kwargs(fake), stream=True))  # no include_usage: the provider sends none
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 16
    spans.clear()
    # include_usage, but the provider reports none: litellm counts tokens itself and says nothing. Flagged.
    chunks = list(litellm.completion(**openai_kwargs(fake, **{"X-Fake-Scenario": "no-usage"}), stream=True,
                                     stream_options={"include_usage": True}))
    made_up = chunks[-1].usage
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (made_up.prompt_tokens,
                                                                                 made_up.completion_tokens)


def test_cache_hit_costs_nothing(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    litellm.cache = litellm.Cache(type="local")
    try:
        first = litellm.completion(**openai_kwargs(fake), caching=True)
        second = litellm.completion(**openai_kwargs(fake), caching=True)
    finally:
        litellm.cache = None
    assert second._hidden_params.get("cache_hit") is True and second.choices[0].message.content == TEXT
    assert len(fake.requests) == 1 and first.usage.prompt_tokens == 12_000
    paid, cached = spans.get_finished_spans()
    assert cost(attrs(paid)) == OPENAI_COST
    a = attrs(cached)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], cost(a)) == (0, 0, 0)
    assert a["llmtally.usage.estimated"] is False


def test_mock_responses_are_not_llm_calls(spans: InMemorySpanExporter) -> None:
    response = litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, mock_response="hello")
    assert response.choices[0].message.content == "hello"
    assert spans.get_finished_spans() == ()


def test_content_capture_opt_in(fake: FakeProvider, spans: InMemorySpanExporter,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    litellm.completion(**anthropic_kwargs(fake))
    list(litellm.completion(**anthropic_kwargs(fake), stream=True))
    for span in spans.get_finished_spans():
        a = attrs(span)
        assert "What is the answer?" in str(a["gen_ai.input.messages"])
        assert a["gen_ai.output.messages"] == TEXT
        assert cost(a) == ANTHROPIC_COST
    assert len(spans.get_finished_spans()) == 2


# --- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True])
def test_rejected_requests_have_zero_usage(fake: FakeProvider, spans: InMemorySpanExporter, route: str,
                                           stream: bool) -> None:
    kwargs = (openai_kwargs if route == "openai" else anthropic_kwargs)(fake, **{"X-Fake-Scenario": "error-429"})
    with pytest.raises(litellm.RateLimitError):
        result = litellm.completion(**kwargs, stream=stream)
        list(result)  # the Anthropic route may send a stream's request on the first pull
    assert_rejected(only_span(spans), "RateLimitError")


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_async_rejected_stream(fake: FakeProvider, spans: InMemorySpanExporter, route: str) -> None:
    kwargs = (openai_kwargs if route == "openai" else anthropic_kwargs)(fake, **{"X-Fake-Scenario": "error-500"})
    with pytest.raises(litellm.InternalServerError):
        async for _ in await litellm.acompletion(**kwargs, stream=True):
            pass
    assert_rejected(only_span(spans), "InternalServerError")


def test_unroutable_model_is_a_rejected_litellm_call(spans: InMemorySpanExporter) -> None:
    with pytest.raises(litellm.BadRequestError):
        litellm.completion(model="no-such-model-anywhere", messages=MESSAGES)
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "BadRequestError"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (0, 0)
    assert (a["gen_ai.provider.name"], a["llmtally.cost.status"]) == ("litellm", "unpriced")


@pytest.mark.parametrize("route", ["openai", "anthropic"])
def test_cut_stream_is_an_error_with_estimated_usage(fake: FakeProvider, spans: InMemorySpanExporter,
                                                     route: str) -> None:
    kwargs = (openai_kwargs if route == "openai" else anthropic_kwargs)(
        fake, **{"X-Fake-Scenario": "cut", "X-Fake-Chunks": "20"})
    seen = []
    # litellm maps the broken read to a class of its own (a ServiceUnavailableError), on both routes
    with pytest.raises(litellm.exceptions.MidStreamFallbackError) as raised:
        for chunk in litellm.completion(**kwargs, stream=True):
            seen.append(chunk)
    assert type(raised.value).__module__.startswith("litellm") and seen
    assert type(raised.value) is litellm.exceptions.MidStreamFallbackError  # exactly: error.type names it
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "MidStreamFallbackError"
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] > 0
    if route == "anthropic":  # message_start's input counts are real; the output never got its total
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_read.input_tokens"]) == (12_000, 4_000)
        assert a["gen_ai.usage.output_tokens"] < 800


# --- abandoned streams -------------------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["openai", "anthropic"])
def test_stream_break_then_gc(fake: FakeProvider, spans: InMemorySpanExporter, route: str) -> None:
    kwargs = openai_kwargs(fake) if route == "openai" else anthropic_kwargs(fake)
    stream = litellm.completion(**kwargs, stream=True, stream_options={"include_usage": True})
    for _ in stream:
        break
    assert spans.get_finished_spans() == ()
    del stream
    gc.collect()
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True and "gen_ai.response.finish_reasons" not in a
    if route == "anthropic":
        # message_start reported the input (exact) and "output_tokens: 1" (not final): output estimated.
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"]) == (12_000, 1_000)
        assert a["gen_ai.usage.output_tokens"] < 800
        assert cost(a) < ANTHROPIC_COST


def test_stream_never_iterated_is_finished_on_gc(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    stream = litellm.completion(**openai_kwargs(fake), stream=True)
    assert len(fake.requests) == 1  # litellm's OpenAI route sends the request at once
    del stream
    gc.collect()
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 0


def test_close_is_what_the_stream_has(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """CustomStreamWrapper has no close() (only aclose()): the proxy must not grow one, or code that checks
    ``hasattr(stream, "close")`` before calling it would now fail."""
    stream = litellm.completion(**anthropic_kwargs(fake), stream=True)
    assert not hasattr(stream.__wrapped__, "close") and not hasattr(stream, "close")
    with pytest.raises(AttributeError):
        stream.close()
    assert isinstance(stream, litellm.CustomStreamWrapper)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == TEXT
    assert_priced(only_span(spans), fake, "anthropic", stream=True)


def _with_error(stream: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(BaseException) as caught, stream:
        pass
    return caught.type, str(caught.value)


async def _async_with_error(stream: Any) -> tuple[type[BaseException], str]:
    with pytest.raises(BaseException) as caught:
        async with stream:
            pass
    return caught.type, str(caught.value)


@pytest.mark.anyio
async def test_with_fails_as_without_instrumentation(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """CustomStreamWrapper is no (async) context manager: ``with`` on it is the interpreter's TypeError, and
    must stay that (not an AttributeError out of the proxy) for code that catches it."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        plain = litellm.completion(**anthropic_kwargs(fake), stream=True)
        aplain = await litellm.acompletion(**anthropic_kwargs(fake), stream=True)
    assert type(plain) is litellm.CustomStreamWrapper and type(aplain) is litellm.CustomStreamWrapper
    expected, aexpected = _with_error(plain), await _async_with_error(aplain)
    assert expected[0] is TypeError and aexpected[0] is TypeError
    traced = litellm.completion(**anthropic_kwargs(fake), stream=True)
    atraced = await litellm.acompletion(**anthropic_kwargs(fake), stream=True)
    assert type(traced) is not litellm.CustomStreamWrapper  # the proxy
    assert _with_error(traced) == expected
    assert await _async_with_error(atraced) == aexpected
    assert "".join(c.choices[0].delta.content or "" for c in traced) == TEXT  # still the app's stream
    assert "".join([c.choices[0].delta.content or "" async for c in atraced]) == TEXT
    for span in spans.get_finished_spans():
        assert_priced(span, fake, "anthropic", stream=True)
    assert len(spans.get_finished_spans()) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("route", ["openai", "anthropic"])
async def test_async_stream_break_then_aclose(fake: FakeProvider, spans: InMemorySpanExporter, route: str) -> None:
    kwargs = openai_kwargs(fake) if route == "openai" else anthropic_kwargs(fake)
    stream = await litellm.acompletion(**kwargs, stream=True)
    async for _ in stream:
        break
    assert spans.get_finished_spans() == ()
    await stream.aclose()
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] >= 1


# --- real recorded payloads through litellm ------------------------------------------------------------------

RECORDED = real_payloads(lambda api: api in ("openai.chat", "openai.embeddings", "groq.chat", "compat.chat",
                                             "anthropic.messages"))


# Published prices per 1M tokens (input, output, cache read, cache write) of the model each call is priced as:
# the request model (litellm's answer names the model it was asked for; a Groq/Together/DeepSeek response model
# is no OpenAI catalog model, so the openai/gpt-4o-mini every chat record is sent as is what is priced).
RECORDED_PRICES = {
    # Claude 3.5 Haiku: $0.80 input, $4 output, $0.08 cache read, $1.00 (5-minute) cache write
    "claude-3-5-haiku-20241022": ("claude-3-5-haiku-latest", (D("0.80"), D(4), D("0.08"), D("1.00"))),
    # Claude 3.5 Sonnet: $3 input, $15 output, $0.30 cache read, $3.75 (5-minute) cache write
    "claude-3-5-sonnet-20240620": ("claude-3-5-sonnet", (D(3), D(15), D("0.30"), D("3.75"))),
    # gpt-4o-mini: $0.15 input, $0.60 output (reasoning included), $0.075 cached input; no cache writes recorded
    OPENAI_MODEL: ("gpt-4o-mini", (D("0.15"), D("0.60"), D("0.075"), D("0.15"))),
    # embeddings: input only; text-embedding-3-small $0.02, text-embedding-ada-002 $0.10
    "text-embedding-3-small": ("text-embedding-3-small", (D("0.02"), D(0), D(0), D(0))),
    "text-embedding-ada-002": ("text-embedding-ada-002", (D("0.10"), D(0), D(0), D(0))),
}


def test_recorded_payloads_found() -> None:
    assert len(RECORDED) == 20


@pytest.mark.parametrize("record", RECORDED, ids=[f"{r['id']}-{r['api']}" for r in RECORDED])
def test_recorded_payload_through_litellm(fake: FakeProvider, spans: InMemorySpanExporter,
                                          record: dict[str, Any]) -> None:
    """Real responses (Anthropic JSON and SSE, whose message_delta may carry only output_tokens; OpenAI,
    Groq with x_groq stream usage, Together) served verbatim to litellm's Anthropic and OpenAI routes."""
    serve_recording(fake, record)
    request = record["request"] or {}
    messages = request.get("messages") or MESSAGES
    common = {"api_key": "k", "extra_headers": {"X-Fake-Replay": record["id"]}}
    if record["api"] == "anthropic.messages":
        model = request.get("model", ANTHROPIC_MODEL)
        result = litellm.completion(model=f"anthropic/{model}", messages=messages,
                                    max_tokens=request.get("max_tokens", 1024), api_base=fake.anthropic_url,
                                    stream=record["stream"], **common)
    elif record["api"] == "openai.embeddings":
        model = request["model"]
        result = litellm.embedding(model=f"openai/{model}", input=request["input"],
                                   api_base=fake.openai_url, **common)
    else:
        # An OpenAI model name whatever model answered: for Llama names litellm fetches a tokenizer from
        # huggingface.co to count stream tokens itself (litellm's doing, not ours; no network in tests).
        model = OPENAI_MODEL
        result = litellm.completion(model=f"openai/{OPENAI_MODEL}", messages=messages, api_base=fake.openai_url,
                                    stream=record["stream"], stream_options=request.get("stream_options"),
                                    **common)
    if record["stream"]:
        list(result)
    a = attrs(only_span(spans))
    expected = record["expected"]
    assert a["gen_ai.usage.input_tokens"] == expected["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == expected["output_tokens"]
    assert a.get("gen_ai.usage.cache_read.input_tokens", 0) == (expected.get("cache_read_input_tokens") or 0)
    assert a.get("gen_ai.usage.cache_creation.input_tokens", 0) == (
        expected.get("cache_creation_input_tokens") or 0)
    assert a["llmtally.usage.estimated"] is False
    priced_as, (rate_in, rate_out, rate_read, rate_write) = RECORDED_PRICES[model]
    assert (a["llmtally.cost.status"], a["llmtally.price.model"]) == ("priced", priced_as)
    cache_read = expected.get("cache_read_input_tokens") or 0
    cache_write = expected.get("cache_creation_input_tokens") or 0
    uncached = expected["input_tokens"] - cache_read - cache_write  # semconv input includes the cache
    assert cost(a) == (uncached * rate_in + cache_read * rate_read + cache_write * rate_write
                       + expected["output_tokens"] * rate_out) / M


# --- routing (pure) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("model", "custom", "api_base", "provider", "request_model"), [
    ("openai/gpt-4o-mini", None, None, "openai", "gpt-4o-mini"),
    ("gpt-4o-mini", None, None, "openai", "gpt-4o-mini"),
    ("claude-3-5-haiku-20241022", "anthropic", None, "anthropic", "claude-3-5-haiku-20241022"),
    ("anthropic/claude-3-5-haiku-20241022", None, None, "anthropic", "claude-3-5-haiku-20241022"),
    ("azure/my-deployment", None, "https://res.openai.azure.com", "azure.ai.openai", "my-deployment"),
    ("azure_ai/mistral-large", None, None, "azure.ai.inference", "mistral-large"),
    ("bedrock/converse/anthropic.claude-3-5-haiku-20241022-v1:0", None, None, "aws.bedrock",
     "anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("bedrock/us.anthropic.claude-3-5-haiku-20241022-v1:0", None, None, "aws.bedrock",
     "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("vertex_ai/gemini-2.0-flash", None, None, "gcp.vertex_ai", "gemini-2.0-flash"),
    ("gemini/gemini-2.0-flash", None, None, "gcp.gemini", "gemini-2.0-flash"),
    ("mistral/mistral-small-latest", None, None, "mistral_ai", "mistral-small-latest"),
    ("cohere_chat/command-r", None, None, "cohere", "command-r"),
    ("ollama_chat/llama3", None, None, "ollama", "llama3"),
    ("groq/llama-3.1-8b-instant", None, None, "groq", "llama-3.1-8b-instant"),
    ("xai/grok-2", None, None, "x_ai", "grok-2"),
    ("deepseek/deepseek-chat", None, None, "deepseek", "deepseek-chat"),
    ("openrouter/openai/gpt-4o", None, None, "openrouter", "openai/gpt-4o"),
    ("watsonx/ibm/granite-13b", None, None, "ibm.watsonx.ai", "ibm/granite-13b"),
    ("hosted_vllm/my-model", None, "http://10.0.0.5:8000/v1", "hosted_vllm", "my-model"),
    ("openai/llama-3.1-8b-instant", None, "https://api.groq.com/openai/v1", "groq", "llama-3.1-8b-instant"),
    ("my-model", "openai", None, "openai", "my-model"),
    ("no-such-model", None, None, "litellm", "no-such-model"),
])
def test_routing(model: str, custom: str | None, api_base: str | None, provider: str, request_model: str) -> None:
    from llmtally.instrumentation.hosts import server_of
    from llmtally.instrumentation.litellm import provider_name, route
    from llmtally.instrumentation.litellm import request_model as bare_model

    litellm_provider, bare = route(model, custom, litellm.provider_list, litellm.model_cost)
    assert provider_name(litellm_provider, server_of(api_base)[0]) == provider
    assert bare_model(litellm_provider, bare) == request_model


def test_server_of_api_bases() -> None:
    from llmtally.instrumentation.hosts import server_of

    assert server_of("https://api.groq.com/openai/v1") == ("api.groq.com", 443)
    assert server_of("http://10.0.0.5:8000/v1") == ("10.0.0.5", 8000)
    assert server_of("http://localhost/v1") == ("localhost", 80)
    assert server_of("my-proxy.internal:4000") == ("my-proxy.internal", 4000)  # litellm accepts bare hosts
    assert server_of("http://host:port/v1") == ("host", None)  # never raises
    assert server_of(None) == server_of("") == server_of("/v1") == (None, None)


def test_request_attributes_are_the_openai_parameters() -> None:
    """litellm takes OpenAI's parameters (positional messages too); openai.* attributes stay on OpenAI spans."""
    from llmtally.instrumentation.litellm import CHAT, EMBEDDINGS, _request_attributes

    kwargs = {"max_completion_tokens": 50, "temperature": 1, "seed": 3, "stop": "END", "n": 2,
              "response_format": {"type": "json_schema"}, "service_tier": "flex"}
    a = _request_attributes(CHAT, "openai", kwargs, MESSAGES, capture=True)
    assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.temperature"], a["gen_ai.request.seed"]) == (50, 1.0, 3)
    assert (a["gen_ai.request.stop_sequences"], a["gen_ai.request.choice.count"]) == (["END"], 2)
    assert (a["gen_ai.output.type"], a["openai.request.service_tier"]) == ("json", "flex")
    assert json.loads(str(a["gen_ai.input.messages"])) == MESSAGES
    assert "openai.request.service_tier" not in _request_attributes(CHAT, "anthropic", kwargs, MESSAGES, False)
    assert _request_attributes(EMBEDDINGS, "openai", {"encoding_format": "base64"}, ["a"], False) == {
        "gen_ai.request.encoding_formats": ["base64"]}


def test_from_litellm_reads_litellms_own_usage_types() -> None:
    """litellm's Usage as its Anthropic transformation builds it (prompt tokens inclusive of cache)."""
    from litellm.llms.anthropic.chat.transformation import AnthropicConfig

    from llmtally.usage import from_litellm

    usage = AnthropicConfig().calculate_usage(
        usage_object={"input_tokens": 7_000, "cache_read_input_tokens": 4_000, "cache_creation_input_tokens": 1_000,
                      "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 400},
                      "output_tokens": 800}, reasoning_content=None)
    assert usage.prompt_tokens == 12_000
    u = from_litellm(usage)
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == (12_000, 4_000,
                                                                                                   1_000, 400)
    assert (u.output_tokens, u.uncached_input_tokens, u.clamped) == (800, 7_000, False)
    # OpenRouter's cost (a number) and Perplexity's (an object with total_cost) are provider prices.
    assert from_litellm(litellm.Usage(prompt_tokens=10, completion_tokens=2, cost=0.25)).provider_cost == D("0.25")
    perplexity = from_litellm({"prompt_tokens": 10, "completion_tokens": 2, "cost": {"total_cost": 0.006}})
    assert perplexity.provider_cost == D("0.006") and not perplexity.clamped


# --- no import, no network -----------------------------------------------------------------------------------

NO_NETWORK_SCENARIO = """
import json, os, socket, sys
attempts = []
connect, resolve = socket.socket.connect, socket.getaddrinfo
def guarded_connect(self, address):
    if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"):
        attempts.append(str(address)); raise OSError("blocked")
    return connect(self, address)
def guarded_resolve(host, *a, **k):
    if host not in ("127.0.0.1", "::1", "localhost", None):
        attempts.append(str(host)); raise socket.gaierror("blocked")
    return resolve(host, *a, **k)
socket.socket.connect, socket.getaddrinfo = guarded_connect, guarded_resolve
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import llmtally
from llmtally.instrumentation.litellm import LiteLLMInstrumentor
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
LiteLLMInstrumentor().instrument(tracer_provider=provider)
imported_by_us = "litellm" in sys.modules
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # the app's choice, made before its own import
os.environ["LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS"] = "True"
from litellm import completion  # bound after instrument(): the wrapped function
completion(model="anthropic/claude-3-5-haiku-20241022", messages=[{"role": "user", "content": "hi"}],
           api_base=sys.argv[1], api_key="k", max_tokens=10)
print(json.dumps({"imported_by_us": imported_by_us, "attempts": attempts,
                  "spans": [dict(s.attributes)["gen_ai.usage.input_tokens"] for s in exporter.get_finished_spans()]}))
"""


def test_never_imports_litellm_and_makes_no_network_call(fake: FakeProvider) -> None:
    """instrument() before litellm is imported wraps it on import (so ``from litellm import completion`` is
    traced) without importing it itself; with the app's offline settings nothing leaves 127.0.0.1."""
    result = run_scenario(NO_NETWORK_SCENARIO, fake.anthropic_url, drop_env=("LITELLM_",), timeout=180)
    assert result == {"imported_by_us": False, "attempts": [], "spans": [25]}
