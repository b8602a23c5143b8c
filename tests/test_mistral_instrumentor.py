"""The Mistral instrumentor driving the real ``mistralai`` SDK (``Mistral``: chat, FIM, embeddings; sync, async,
streams) against the fake provider speaking Mistral's wire format, plus the SDK's own tracing."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmtally import usage as usage_module
from llmtally.testing import FakeProvider, Recording, mistral_wire
from llmtally.usage import Usage
from tests.conftest import (
    GLOBAL_PIPELINE,
    TRACER_PROVIDER,
    assert_rejected,
    attrs,
    only_span,
    real_payloads,
    run_scenario,
    serve_recording,
)

pytest.importorskip("mistralai.client")
from mistralai.client import Mistral, errors, models

httpx2 = pytest.importorskip("httpx2")

D = Decimal
M = D(1_000_000)
MODEL = "mistral-small-latest"
FIM_MODEL = "codestral-latest"
EMBED_MODEL = "mistral-embed"
MESSAGES = [{"role": "user", "content": "What is the answer?"}]
TEXT = "This is a deterministic answer from the llmtally fake provider."  # 63 ASCII characters: 16 tokens
# semconv terms: 12,000 input tokens of which 4,000 cached, 800 output.
USAGE = {"input": 12_000, "output": 800, "cache_read": 4_000}
# Mistral Small "latest" in the bundled catalog (genai-prices): $0.15 input / $0.60 output per 1M tokens;
# cached prompt tokens at 10% of the input price ($0.015), as Mistral bills prompt-cache hits.
COST = (D(8_000) * D("0.15") + D(4_000) * D("0.015") + D(800) * D("0.60")) / M
# Codestral: $0.30 input / $0.90 output per 1M tokens.
FIM_USAGE = {"input": 3_000, "output": 200}
FIM_COST = (D(3_000) * D("0.30") + D(200) * D("0.90")) / M
# Mistral Embed: $0.10 per 1M input tokens.
EMBED_COST = D(12_000) * D("0.10") / M


@pytest.fixture(scope="module", autouse=True)
def instrumented() -> Iterator[None]:
    from llmtally.instrumentation.mistralai import MistralInstrumentor

    instrumentor = MistralInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    instrumentor.uninstrument()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(routes=[*mistral_wire.ROUTES]) as server:
        yield server


def client(fake: FakeProvider) -> Mistral:
    return Mistral(api_key="test", server_url=fake.mistral_url)


def headers(usage: dict[str, int] | None = None, **more: str) -> dict[str, str]:
    return {"X-Fake-Usage": json.dumps(USAGE if usage is None else usage), **more}


def scenario(flags: str) -> dict[str, str]:
    return headers(**{"X-Fake-Scenario": flags})


def assert_priced(span: ReadableSpan, fake: FakeProvider, *, stream: bool, operation: str = "chat",
                  model: str = MODEL) -> dict[str, Any]:
    a = attrs(span)
    assert span.name == f"{operation} {model}" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == (operation,
                                                                                                   "mistral_ai", model)
    assert (a["server.address"], a["server.port"], a["gen_ai.request.stream"]) == ("127.0.0.1", fake.port, stream)
    assert a["llmtally.usage.estimated"] is False and a["llmtally.cost.status"] == "priced"
    assert a["gen_ai.response.model"] == model and isinstance(a.get("gen_ai.response.id"), str)
    if stream:
        assert a["gen_ai.response.time_to_first_chunk"] >= 0
    if operation == "chat":
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12_000, 800)
        assert a["gen_ai.usage.cache_read.input_tokens"] == 4_000
        assert D(a["llmtally.cost.decimal"]) == COST
        assert a["gen_ai.response.finish_reasons"] == ("stop",)
    elif operation == "text_completion":
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (3_000, 200)
        assert D(a["llmtally.cost.decimal"]) == FIM_COST
    return a


# --- every surface ----------------------------------------------------------------------------------------

def test_chat_complete(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake).chat.complete(model=MODEL, messages=MESSAGES, temperature=0.3, top_p=0.9, max_tokens=100,
                                          random_seed=7, stop=["END"], presence_penalty=0.1, frequency_penalty=0.2,
                                          n=2, http_headers=headers())
    assert isinstance(response, models.ChatCompletionResponse) and response.choices[0].message.content == TEXT
    a = assert_priced(only_span(spans), fake, stream=False)
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_p"], a["gen_ai.request.max_tokens"]) == (0.3, 0.9,
                                                                                                          100)
    assert (a["gen_ai.request.seed"], a["gen_ai.request.stop_sequences"]) == (7, ("END",))
    assert (a["gen_ai.request.presence_penalty"], a["gen_ai.request.frequency_penalty"]) == (0.1, 0.2)
    assert a["gen_ai.request.choice.count"] == 2
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # content is opt-in
    assert fake.requests[-1].path == "/mistral/v1/chat/completions"


def test_request_attributes_keep_their_semconv_types(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """Whole-number sampling parameters (``temperature=0``, ``top_p=1``) are doubles as everywhere else: one
    attribute, one type, across calls and instrumentors."""
    client(fake).chat.complete(model=MODEL, messages=MESSAGES, temperature=0, top_p=1, presence_penalty=0,
                               max_tokens=100, random_seed=7, http_headers=headers())
    a = attrs(only_span(spans))
    for key in ("gen_ai.request.temperature", "gen_ai.request.top_p", "gen_ai.request.presence_penalty"):
        assert type(a[key]) is float, key
    assert (type(a["gen_ai.request.max_tokens"]), type(a["gen_ai.request.seed"])) == (int, int)
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_p"]) == (0.0, 1.0)


def test_chat_stream(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    events = list(client(fake).chat.stream(model=MODEL, messages=MESSAGES, http_headers=headers()))
    assert all(isinstance(e, models.CompletionEvent) for e in events)
    assert "".join(e.data.choices[0].delta.content for e in events) == TEXT
    assert events[-1].data.usage is not None and events[-1].data.usage.prompt_tokens == 12_000
    assert_priced(only_span(spans), fake, stream=True)


def test_chat_parse_goes_through_complete(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    c = client(fake)
    # the fake's answer is not JSON: parsing fails (the SDK's json.loads), the call was made
    with pytest.raises(json.JSONDecodeError):
        c.chat.parse(response_format=Answer, model=MODEL, messages=MESSAGES, http_headers=headers())
    assert_priced(only_span(spans), fake, stream=False)


def test_fim_complete_and_stream(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    response = c.fim.complete(model=FIM_MODEL, prompt="def answer():", suffix="    return x", max_tokens=64,
                              http_headers=headers(FIM_USAGE))
    assert response.choices[0].message.content == TEXT
    a = assert_priced(only_span(spans), fake, stream=False, operation="text_completion", model=FIM_MODEL)
    assert a["gen_ai.request.max_tokens"] == 64
    assert fake.requests[-1].path == "/mistral/v1/fim/completions"
    spans.clear()
    events = list(c.fim.stream(model=FIM_MODEL, prompt="def answer():", http_headers=headers(FIM_USAGE)))
    assert events[-1].data.choices[0].finish_reason == "stop"
    assert_priced(only_span(spans), fake, stream=True, operation="text_completion", model=FIM_MODEL)


def test_embeddings_create(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake).embeddings.create(model=EMBED_MODEL, inputs=["a", "b"], encoding_format="float",
                                              http_headers=headers())
    assert len(response.data) == 2
    a = assert_priced(only_span(spans), fake, stream=False, operation="embeddings", model=EMBED_MODEL)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12_000, 0)
    assert a["gen_ai.request.encoding_formats"] == ("float",)
    assert D(a["llmtally.cost.decimal"]) == EMBED_COST


@pytest.mark.anyio
async def test_async_surfaces(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    await c.chat.complete_async(model=MODEL, messages=MESSAGES, http_headers=headers())
    assert_priced(only_span(spans), fake, stream=False)
    spans.clear()
    stream = await c.chat.stream_async(model=MODEL, messages=MESSAGES, http_headers=headers())
    text = "".join([e.data.choices[0].delta.content async for e in stream])
    assert text == TEXT
    assert_priced(only_span(spans), fake, stream=True)
    spans.clear()
    await c.fim.complete_async(model=FIM_MODEL, prompt="def f():", http_headers=headers(FIM_USAGE))
    stream = await c.fim.stream_async(model=FIM_MODEL, prompt="def f():", http_headers=headers(FIM_USAGE))
    async with stream as entered:
        assert entered is stream
        async for _ in entered:
            pass
    for span, is_stream in zip(spans.get_finished_spans(), (False, True), strict=True):
        assert_priced(span, fake, stream=is_stream, operation="text_completion", model=FIM_MODEL)
    spans.clear()
    await c.embeddings.create_async(model=EMBED_MODEL, inputs="a", http_headers=headers())
    assert D(attrs(only_span(spans))["llmtally.cost.decimal"]) == EMBED_COST


def test_tool_calls(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    response = c.chat.complete(model=MODEL, messages=MESSAGES, http_headers=scenario("tools"))
    assert response.choices[0].message.tool_calls[0].function.name == "get_weather"
    events = list(c.chat.stream(model=MODEL, messages=MESSAGES, http_headers=scenario("tools")))
    assert events[-1].data.choices[0].delta.tool_calls[0].function.arguments == '{"city": "Paris"}'
    for span in spans.get_finished_spans():
        a = attrs(span)
        assert a["gen_ai.response.finish_reasons"] == ("tool_calls",)
        assert D(a["llmtally.cost.decimal"]) == COST
    assert len(spans.get_finished_spans()) == 2


def test_content_capture_opt_in(fake: FakeProvider, spans: InMemorySpanExporter,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    c = client(fake)
    c.chat.complete(model=MODEL, messages=MESSAGES, http_headers=headers())
    list(c.chat.stream(model=MODEL, messages=MESSAGES, http_headers=headers()))
    for span in spans.get_finished_spans():
        a = attrs(span)
        assert "What is the answer?" in a["gen_ai.input.messages"]
        assert a["gen_ai.output.messages"] == TEXT
    assert len(spans.get_finished_spans()) == 2


# --- hook points ----------------------------------------------------------------------------------------

def test_client_created_before_instrument_and_uninstrument(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    from mistralai.client.chat import Chat
    from mistralai.client.embeddings import Embeddings
    from mistralai.client.fim import Fim

    from llmtally.instrumentation.mistralai import MistralInstrumentor

    MistralInstrumentor().uninstrument()
    try:
        for cls, method in ((Chat, "complete"), (Chat, "stream_async"), (Fim, "stream"), (Embeddings, "create")):
            assert not hasattr(getattr(cls, method), "__wrapped__")  # the SDK restored
        c = client(fake)
        c.chat.complete(model=MODEL, messages=MESSAGES, http_headers=headers())
        list(c.chat.stream(model=MODEL, messages=MESSAGES, http_headers=headers()))
        assert spans.get_finished_spans() == ()
    finally:
        MistralInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)
    c.chat.complete(model=MODEL, messages=MESSAGES, http_headers=headers())  # the same, older client
    list(c.chat.stream(model=MODEL, messages=MESSAGES, http_headers=headers()))
    assert len(spans.get_finished_spans()) == 2


def test_suppressed_instrumentation_makes_no_span(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with suppress_instrumentation():
        client(fake).chat.complete(model=MODEL, messages=MESSAGES, http_headers=headers())
    assert spans.get_finished_spans() == ()


def test_server_address_of_the_client_and_of_one_call(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    from llmtally.instrumentation.mistralai import _server

    assert _server(Mistral(api_key="k").chat, {}) == ("api.mistral.ai", 443)
    assert _server(Mistral(api_key="k", server="eu").chat, {}) == ("api.eu.mistral.ai", 443)
    # A per-call server_url wins over the client's (here an unroutable default the call never uses).
    Mistral(api_key="test", server_url="http://192.0.2.1:9").chat.complete(
        model=MODEL, messages=MESSAGES, server_url=fake.mistral_url, http_headers=headers())
    assert_priced(only_span(spans), fake, stream=False)


# --- errors, missing and malformed usage ------------------------------------------------------------------

def test_rejected_requests_have_zero_usage(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    with pytest.raises(errors.SDKError) as info:
        c.chat.complete(model=MODEL, messages=MESSAGES, http_headers=scenario("error-429"))
    assert info.value.status_code == 429
    with pytest.raises(errors.SDKError):
        c.chat.stream(model=MODEL, messages=MESSAGES, http_headers=scenario("error-429"))  # before any chunk
    with pytest.raises(errors.SDKError):
        c.fim.stream(model=FIM_MODEL, prompt="x", http_headers=scenario("error-400"))
    with pytest.raises(errors.SDKError):
        c.embeddings.create(model=EMBED_MODEL, inputs=["a"], http_headers=scenario("error-500"))
    finished = spans.get_finished_spans()
    assert len(finished) == 4
    for span in finished:
        assert_rejected(span, "SDKError")


def test_connection_refused_is_rejected(spans: InMemorySpanExporter) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(httpx2.ConnectError):
        Mistral(api_key="k", server_url=f"http://127.0.0.1:{port}").chat.complete(model=MODEL, messages=MESSAGES)
    assert_rejected(only_span(spans), "ConnectError")


@pytest.mark.anyio
async def test_async_errors_before_the_first_chunk(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    with pytest.raises(errors.SDKError):
        await c.chat.stream_async(model=MODEL, messages=MESSAGES, http_headers=scenario("error-429"))
    with pytest.raises(errors.SDKError):
        await c.chat.complete_async(model=MODEL, messages=MESSAGES, http_headers=scenario("error-500"))
    for span in spans.get_finished_spans():
        assert_rejected(span, "SDKError")
    assert len(spans.get_finished_spans()) == 2


def test_stream_without_usage_is_estimated(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    events = list(client(fake).chat.stream(model=MODEL, messages=MESSAGES, http_headers=scenario("no-usage")))
    assert events[-1].data.usage is None
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True
    assert a["gen_ai.usage.output_tokens"] == -(-len(TEXT) // 4) == 16
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["llmtally.cost.status"] == "priced"  # an estimate is still priced, and flagged


def test_answer_the_sdk_rejects_is_not_a_rejected_request(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """A 200 without usage fails the SDK's validation: the call was served (and billed), so its usage is
    estimated from the body, not an exact zero."""
    with pytest.raises(errors.ResponseValidationError):
        client(fake).chat.complete(model=MODEL, messages=MESSAGES, http_headers=scenario("no-usage"))
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "ResponseValidationError"
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 16
    assert a["gen_ai.usage.input_tokens"] > 0


def test_answer_the_sdk_rejects_keeps_its_reported_usage(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    body = {"object": "chat.completion", "model": MODEL, "choices": [],  # no id, no created: invalid for the SDK
            "usage": {"prompt_tokens": 70, "completion_tokens": 30, "total_tokens": 100}}
    fake.add_recording("invalid", Recording(status=200, body=json.dumps(body).encode(),
                                            headers={"content-type": "application/json"}))
    with pytest.raises(errors.ResponseValidationError):
        client(fake).chat.complete(model=MODEL, messages=MESSAGES, http_headers={"X-Fake-Replay": "invalid"})
    a = attrs(only_span(spans))
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (70, 30)
    assert a["llmtally.usage.estimated"] is False and a["error.type"] == "ResponseValidationError"
    assert D(a["llmtally.cost.decimal"]) == (70 * D("0.15") + 30 * D("0.60")) / M


def test_malformed_usage_is_clamped(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    client(fake).chat.complete(model=MODEL, messages=MESSAGES, http_headers=scenario("malformed-usage"))
    a = attrs(only_span(spans))
    assert a["llmtally.usage.clamped"] is True
    # prompt_tokens "12000" (a numeric string the SDK coerces) reads as 12,000; completion_tokens -5 as 0.
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12_000, 0)
    assert D(a["llmtally.cost.decimal"]) == D(12_000) * D("0.15") / M


# --- the stream abuse matrix ------------------------------------------------------------------------------

def stream_of(fake: FakeProvider, **more: str) -> Any:
    return client(fake).chat.stream(model=MODEL, messages=MESSAGES, http_headers=headers(**more))


def ended_once(spans: InMemorySpanExporter) -> dict[str, Any]:
    gc.collect()
    return attrs(only_span(spans))


def test_stream_object_behaves_like_the_sdk_stream(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    from mistralai.client.utils.eventstreaming import EventStream

    s = stream_of(fake)
    assert isinstance(s, EventStream)
    assert s.response.status_code == 200 and s.response.headers["content-type"].startswith("text/event-stream")
    with s as entered:
        assert entered is s
        first = next(s)
        assert first.data.choices[0].delta.role == "assistant"
        rest = list(s)
    assert rest[-1].data.usage.completion_tokens == 800
    assert ended_once(spans)["llmtally.usage.estimated"] is False


def test_events_identical_to_an_uninstrumented_run(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    def normalise(events: list[Any]) -> list[Any]:
        return [{k: v for k, v in e.data.model_dump().items() if k not in ("id", "created")} for e in events]

    instrumented = list(stream_of(fake))
    with suppress_instrumentation():
        plain = list(stream_of(fake))
    assert normalise(instrumented) == normalise(plain) and len(plain) == 10
    ended_once(spans)


def test_break_then_gc(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = stream_of(fake)
    for _ in s:
        break
    assert spans.get_finished_spans() == ()  # still open: the caller holds the stream
    del s
    a = ended_once(spans)
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 0  # only the role chunk


def test_never_iterated_then_gc(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = stream_of(fake)
    assert len(fake.requests) == 1  # the request was sent by stream() itself
    del s
    assert ended_once(spans)["llmtally.usage.estimated"] is True


def test_close_after_some_chunks(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = stream_of(fake)
    next(s)
    next(s)
    s.close()
    assert len(spans.get_finished_spans()) == 1
    s.close()  # twice is harmless
    assert list(s) == []  # a closed EventStream yields nothing, instrumented or not
    a = ended_once(spans)
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 2  # "This is " counted


def test_context_manager_exit_early(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with stream_of(fake) as s:
        for _ in s:
            break
    assert len(spans.get_finished_spans()) == 1  # ended on exit, not at gc
    assert ended_once(spans)["llmtally.usage.estimated"] is True


def test_exception_inside_the_loop_is_the_callers(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with pytest.raises(ZeroDivisionError), stream_of(fake) as s:
        for _ in s:
            1 / 0  # noqa: B018
    a = ended_once(spans)
    assert "error.type" not in a


def test_cut_stream_is_an_error_with_estimated_usage(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    seen = []
    with pytest.raises(httpx2.HTTPError):
        for event in stream_of(fake, **{"X-Fake-Scenario": "cut"}):
            seen.append(event)
    assert seen  # the cut came after some chunks
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "RemoteProtocolError"
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] > 0


@pytest.mark.anyio
async def test_async_break_close_exit_and_cut(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    s = await c.chat.stream_async(model=MODEL, messages=MESSAGES, http_headers=headers())
    async for _ in s:
        break
    await s.close()
    assert attrs(only_span(spans))["llmtally.usage.estimated"] is True
    spans.clear()
    async with await c.chat.stream_async(model=MODEL, messages=MESSAGES, http_headers=headers()) as s2:
        async for _ in s2:
            break
    assert attrs(only_span(spans))["llmtally.usage.estimated"] is True
    spans.clear()
    with pytest.raises(httpx2.HTTPError):
        async for _ in await c.chat.stream_async(model=MODEL, messages=MESSAGES,
                                                 http_headers=scenario("cut")):
            pass
    span = only_span(spans)
    assert span.status.status_code is StatusCode.ERROR and attrs(span)["llmtally.usage.estimated"] is True


@pytest.mark.anyio
async def test_async_task_cancelled_mid_stream(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    got_one = asyncio.Event()

    async def consume() -> None:
        s = await client(fake).chat.stream_async(model=MODEL, messages=MESSAGES,
                                                 http_headers=headers(**{"X-Fake-Chunk-Delay": "0.2"}))
        async for _ in s:
            got_one.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(got_one.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    a = ended_once(spans)
    assert a["error.type"] == "CancelledError" and a["llmtally.usage.estimated"] is True


# --- fail-open --------------------------------------------------------------------------------------------

def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("llmtally bug")


INTERNALS = [
    "llmtally.instrumentation.mistralai._request_attributes",
    "llmtally.instrumentation.mistralai._usage",
    "llmtally.instrumentation.mistralai._ChunkAccumulator.on_item",
    "llmtally.instrumentation.call.cost_attributes",
    "opentelemetry.sdk.trace.Tracer.start_span",
]


@pytest.mark.parametrize("target", INTERNALS)
def test_every_internal_failure_leaves_the_call_unchanged(fake: FakeProvider, spans: InMemorySpanExporter,
                                                          monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    from llmtally.instrumentation._guard import internal_error_counts

    def run() -> tuple[Any, Any]:
        c = client(fake)
        answer = c.chat.complete(model=MODEL, messages=MESSAGES, http_headers=headers())
        events = list(c.chat.stream(model=MODEL, messages=MESSAGES, http_headers=headers()))
        drop = ("id", "created")
        return ({k: v for k, v in answer.model_dump().items() if k not in drop},
                [{k: v for k, v in e.data.model_dump().items() if k not in drop} for e in events])

    with suppress_instrumentation():
        expected = run()
    before = sum(internal_error_counts().values())
    monkeypatch.setattr(target, _boom)
    assert run() == expected
    assert sum(internal_error_counts().values()) > before  # swallowed, but counted


# --- usage normalisation against the SDK's types ----------------------------------------------------------

def test_cached_tokens_in_each_spelling_mistral_uses() -> None:
    base = {"prompt_tokens": 801, "completion_tokens": 2, "total_tokens": 803}
    for extra in ({"prompt_tokens_details": {"cached_tokens": 768}}, {"prompt_token_details": {"cached_tokens": 768}},
                  {"num_cached_tokens": 768}):
        info = models.UsageInfo.model_validate({**base, **extra})  # extra="allow": kept beside the fields
        for payload in (info, {**base, **extra}, {"usage": {**base, **extra}}):
            got = usage_module.from_mistral(payload)
            assert got == Usage(input_tokens=801, output_tokens=2, cache_read_tokens=768), (extra, payload)
    # prompt_tokens_details wins when both spellings are there; a null detail is no cache hit.
    both = {**base, "prompt_tokens_details": {"cached_tokens": 64}, "prompt_token_details": {"cached_tokens": 768}}
    assert usage_module.from_mistral(both).cache_read_tokens == 64
    assert usage_module.from_mistral({**base, "prompt_token_details": None}).cache_read_tokens == 0


# --- the default fake server ------------------------------------------------------------------------------

def test_default_fake_server_serves_mistral_and_openai_apart(spans: InMemorySpanExporter) -> None:
    import urllib.request

    with FakeProvider() as server:
        response = Mistral(api_key="k", server_url=server.mistral_url).embeddings.create(
            model=EMBED_MODEL, inputs=["a"], http_headers=headers())
        assert response.id  # Mistral's shape (OpenAI's embeddings carry no id)
        request = urllib.request.Request(f"{server.url}/v1/embeddings", data=b'{"model": "m", "input": "a"}',
                                         headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert "id" not in json.loads(reply.read())  # still OpenAI's wire
    assert D(attrs(only_span(spans))["llmtally.cost.decimal"]) == EMBED_COST


# --- real recorded Mistral responses ----------------------------------------------------------------------

RECORDED = real_payloads(lambda api: api in ("mistral.chat", "mistral.embeddings"))
# Published prices per 1M tokens: mistral-tiny (Mistral 7B) $0.25 input and output (no cache discount in
# the catalog), mistral-embed $0.10 input.
PRICES = {"mistral-tiny": (D("0.25"), D("0.25")), "mistral-embed": (D("0.10"), D("0.10"))}


def test_recorded_mistral_payloads_found() -> None:
    assert sorted(r["api"] for r in RECORDED) == ["mistral.chat"] * 4 + ["mistral.embeddings"] * 2
    assert sum(r["stream"] for r in RECORDED) == 2


@pytest.mark.parametrize("record", RECORDED, ids=[f"{r['id']}-{r['api']}" for r in RECORDED])
def test_recorded_payload_through_the_sdk(fake: FakeProvider, spans: InMemorySpanExporter,
                                          record: dict[str, Any]) -> None:
    """Real chat (JSON and SSE) and embeddings responses, served verbatim to the real SDK."""
    serve_recording(fake, record)
    replay = {"X-Fake-Replay": record["id"]}
    request = record["request"]
    model = request["model"]
    c = client(fake)
    if record["api"] == "mistral.embeddings":
        response = c.embeddings.create(model=model, inputs=request["input"], http_headers=replay)
        assert len(response.data) == len(request["input"])
    elif record["stream"]:
        events = list(c.chat.stream(model=model, messages=request["messages"], http_headers=replay))
        assert events[-1].data.usage is not None
    else:
        c.chat.complete(model=model, messages=request["messages"], http_headers=replay)
    a = attrs(only_span(spans))
    expected = record["expected"]
    assert a["gen_ai.usage.input_tokens"] == expected["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == expected["output_tokens"]
    assert a.get("gen_ai.usage.cache_read.input_tokens", 0) == expected["cache_read_input_tokens"]
    assert a["llmtally.usage.estimated"] is False and a["gen_ai.provider.name"] == "mistral_ai"
    rate_in, rate_out = PRICES[model]
    cost = (expected["input_tokens"] * rate_in + expected["output_tokens"] * rate_out) / M
    assert D(a["llmtally.cost.decimal"]) == cost


# --- the SDK's own tracing, with a global tracer provider as a user sets it ----------------------------------

SDK_TRACING_SCENARIO = GLOBAL_PIPELINE + """
import asyncio, json, sys
from mistralai.client import Mistral
if sys.argv[3] == "instrumented":
    from llmtally.instrumentation.mistralai import MistralInstrumentor
    MistralInstrumentor().instrument()
client = Mistral(api_key="k", server_url=sys.argv[1])
h = {"X-Fake-Usage": sys.argv[2]}
msgs = [{"role": "user", "content": "hi"}]
client.chat.complete(model="mistral-small-latest", messages=msgs, http_headers=h)
with client.chat.stream(model="mistral-small-latest", messages=msgs, http_headers=h) as s:
    list(s)
client.embeddings.create(model="mistral-embed", inputs=["a"], http_headers=h)
async def run():
    await client.chat.complete_async(model="mistral-small-latest", messages=msgs, http_headers=h)
    s = await client.chat.stream_async(model="mistral-small-latest", messages=msgs, http_headers=h)
    async for _ in s:
        pass
asyncio.run(run())
spans = exporter.get_finished_spans()
by_id = {s.context.span_id: s for s in spans}
records = pipeline.records()
print(json.dumps({
    "scopes": sorted(s.instrumentation_scope.name for s in spans),
    "sdk_parents": sorted(by_id[s.parent.span_id].instrumentation_scope.name if s.parent else "none"
                          for s in spans if s.instrumentation_scope.name == "mistralai_sdk_tracer"),
    "records": len(records),
    "costs": sorted(r.attributes["llmtally.cost.decimal"] for r in records),
}))
"""
SCENARIO_COSTS = sorted([str(COST.normalize())] * 4 + [str(EMBED_COST.normalize())])


def run_tracing_scenario(fake: FakeProvider, telemetry: str | None, mode: str) -> dict[str, Any]:
    result: dict[str, Any] = run_scenario(
        SDK_TRACING_SCENARIO, fake.mistral_url, json.dumps(USAGE), mode, drop_env=("MISTRAL_", "OTEL_"),
        set_env={} if telemetry is None else {"MISTRAL_SDK_TELEMETRY": telemetry})
    return result


def test_counted_once_with_the_httpx_fallback(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """mistralai sends through httpx to OpenAI-shaped paths (/v1/chat/completions, /v1/fim/completions,
    /v1/embeddings) the fallback recognises: with both instrumentors on, every surface is Mistral's span alone."""
    from llmtally.instrumentation.httpx_fallback import HttpxInstrumentor

    fallback = HttpxInstrumentor()
    was_on = fallback.is_instrumented_by_opentelemetry
    if not was_on:
        fallback.instrument(tracer_provider=TRACER_PROVIDER, host_providers={"127.0.0.1": "mistral_ai"})
    try:
        c = client(fake)
        c.chat.complete(model=MODEL, messages=MESSAGES, http_headers=headers())
        list(c.chat.stream(model=MODEL, messages=MESSAGES, http_headers=headers()))
        c.fim.complete(model=FIM_MODEL, prompt="def f(", http_headers=headers(FIM_USAGE))
        c.embeddings.create(model=EMBED_MODEL, inputs=["a"], http_headers=headers())

        async def run() -> None:
            await c.chat.complete_async(model=MODEL, messages=MESSAGES, http_headers=headers())
            async for _ in await c.chat.stream_async(model=MODEL, messages=MESSAGES, http_headers=headers()):
                pass

        asyncio.run(run())
    finally:
        if not was_on:
            fallback.uninstrument()
    found = spans.get_finished_spans()
    assert [s.instrumentation_scope.name for s in found] == ["llmtally.instrumentation.mistralai"] * 6
    assert [attrs(s)["gen_ai.operation.name"] for s in found] == ["chat", "chat", "text_completion", "embeddings",
                                                                  "chat", "chat"]
    assert len(fake.requests) == 6


def test_sdk_default_settings_make_no_spans_of_their_own(fake: FakeProvider) -> None:
    """mistralai 3.x with its defaults (MISTRAL_SDK_TELEMETRY unset) does not trace, even into a global
    provider: each call is llmtally's span alone, counted once."""
    result = run_tracing_scenario(fake, None, "instrumented")
    assert result["scopes"] == ["llmtally.instrumentation.mistralai"] * 5, result
    assert result["records"] == 5 and result["costs"] == SCENARIO_COSTS


def test_sdk_tracing_into_the_global_provider_nests_under_ours_and_counts_once(fake: FakeProvider) -> None:
    result = run_tracing_scenario(fake, "global", "instrumented")
    assert result["scopes"].count("mistralai_sdk_tracer") == 5, result  # the SDK's own spans are kept
    assert result["sdk_parents"] == ["llmtally.instrumentation.mistralai"] * 5  # nested under ours
    assert result["records"] == 5 and result["costs"] == SCENARIO_COSTS  # counted and priced once each


def test_sdk_tracing_alone_is_counted_from_its_spans(fake: FakeProvider) -> None:
    """Control: without llmtally's instrumentor the processor converts the SDK's spans (they carry tokens),
    so it is the nesting above, not a blind spot, that keeps the instrumented run at one record per call."""
    result = run_tracing_scenario(fake, "global", "plain")
    assert result["scopes"] == ["mistralai_sdk_tracer"] * 5 and result["sdk_parents"] == ["none"] * 5, result
    assert result["records"] == 5
