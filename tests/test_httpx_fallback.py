"""The httpx fallback: real ``httpx`` and ``httpx2`` clients (and the real openai / anthropic SDKs on top of
them) against the fake provider on 127.0.0.1, JSON and SSE, sync and async, and every way a stream ends."""

from __future__ import annotations

import gc
import gzip
import json
import re
import socket
from collections.abc import Iterator
from decimal import Decimal
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmtally.instrumentation import _guard
from llmtally.instrumentation import httpx_fallback as fb
from llmtally.instrumentation.httpx_fallback import HttpxInstrumentor
from llmtally.testing import FakeProvider, Recording, Route, StreamReply, anthropic_wire, openai_wire, sse
from tests.conftest import (
    GLOBAL_PIPELINE,
    TRACER_PROVIDER,
    assert_rejected,
    attrs,
    make_pipeline,
    only_span,
    real_payloads,
    run_scenario,
    serve_recording,
)

D = Decimal
M = D(1_000_000)
SCOPE = "llmtally.instrumentation.httpx_fallback"
MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "What is the answer?"}]
USAGE = {"input": 1200, "output": 300, "cache_read": 1024, "reasoning": 200}
HEADERS = {"X-Fake-Usage": json.dumps(USAGE)}
# gpt-4o-mini: $0.15 input, $0.075 cached, $0.60 output per 1M (176 uncached + 1024 cached in, 300 out)
GPT_4O_MINI = (D(176) * D("0.15") + D(1024) * D("0.075") + D(300) * D("0.60")) / M
EMBED = D(1200) * D("0.02") / M  # text-embedding-3-small: $0.02 per 1M
INSTRUCT = (D(1200) * D("1.5") + D(300) * 2) / M  # gpt-3.5-turbo-instruct: $1.50 in, $2.00 out
CLAUDE = "claude-sonnet-4-5-20250929"
A_USAGE = {"input": 12_000, "output": 600, "cache_read": 10_000, "cache_write": 1_500, "cache_write_1h": 1_000,
           "reasoning": 200}
A_HEADERS = {"X-Fake-Usage": json.dumps(A_USAGE)}
# Claude Sonnet 4.5: $3 input, $3.75 5-minute cache write, $6 1-hour cache write, $0.30 cache read, $15 output.
A_COST = (D(500) * 3 + D(500) * D("3.75") + D(1_000) * 6 + D(10_000) * D("0.30") + D(600) * 15) / M
TEXT = "This is a deterministic answer from the llmtally fake provider."  # 63 ASCII characters: 16 tokens
MODULES = [pytest.param(httpx, id="httpx"), pytest.param(httpx2, id="httpx2")]


@pytest.fixture(scope="module", autouse=True)
def instrumented() -> Iterator[None]:
    instrumentor = HttpxInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:  # e.g. by a configure() elsewhere: ours, with our tracer
        instrumentor.uninstrument()
    # The fake serves both wires on 127.0.0.1: price each as its own API ("wire"); unknown hosts are
    # tested separately.
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER, host_providers={"127.0.0.1": "wire"})
    yield
    instrumentor.uninstrument()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(routes=[*openai_wire.ROUTES, *anthropic_wire.ROUTES]) as server:
        yield server


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, **extra}


def stream_body(usage: bool = True) -> dict[str, Any]:
    return chat_body(stream=True, **({"stream_options": {"include_usage": True}} if usage else {}))


def assert_chat(span: ReadableSpan, fake: FakeProvider, *, stream: bool, cost: Decimal = GPT_4O_MINI) -> None:
    a = attrs(span)
    assert span.name == f"chat {MODEL}" and span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope.name == SCOPE and span.status.status_code is StatusCode.UNSET
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == ("chat", "openai",
                                                                                                   MODEL)
    assert (a["server.address"], a["server.port"], a["gen_ai.request.stream"]) == ("127.0.0.1", fake.port, stream)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1200, 300)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 1024 and a["gen_ai.usage.reasoning.output_tokens"] == 200
    assert a["llmtally.usage.estimated"] is False and a["llmtally.cost.status"] == "priced"
    assert D(str(a["llmtally.cost.decimal"])) == cost
    assert a["gen_ai.response.model"] == MODEL and str(a["gen_ai.response.id"]).startswith("chatcmpl-")
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["openai.api.type"] == "chat_completions"
    assert ("gen_ai.response.time_to_first_chunk" in a) is stream


# --- JSON and SSE, sync ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mod", MODULES)
def test_json_chat(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        response = client.post("/chat/completions", json=chat_body(temperature=0.2, max_tokens=50))
    assert response.json()["choices"][0]["message"]["content"] == TEXT  # the app's body is untouched
    span = only_span(spans)
    assert_chat(span, fake, stream=False)
    assert (attrs(span)["gen_ai.request.temperature"], attrs(span)["gen_ai.request.max_tokens"]) == (0.2, 50)


@pytest.mark.parametrize("mod", MODULES)
def test_sse_chat_read_line_by_line(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client, \
            client.stream("POST", "/chat/completions", json=stream_body()) as response:
        assert isinstance(response.stream, mod.SyncByteStream)  # the proxy passes the package's checks
        assert spans.get_finished_spans() == ()  # nothing read yet: the call is still open
        lines = list(response.iter_lines())
    assert lines[-2] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == TEXT
    assert_chat(only_span(spans), fake, stream=True)


@pytest.mark.parametrize("mod", MODULES)
def test_send_stream_true_then_read(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """``send(stream=True)`` and ``read()``: a JSON body read through the stream, and an SSE body."""
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        response = client.send(client.build_request("POST", "/chat/completions", json=chat_body()), stream=True)
        assert response.read() and response.json()["usage"]["prompt_tokens"] == 1200
        assert_chat(only_span(spans), fake, stream=False)
        spans.clear()
        response = client.send(client.build_request("POST", "/chat/completions", json=stream_body()), stream=True)
        body = response.read()
    assert body.endswith(b"data: [DONE]\n\n")
    assert_chat(only_span(spans), fake, stream=True)


@pytest.mark.parametrize("mod", MODULES)
def test_sse_read_by_a_plain_post(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """``client.post(..., json={"stream": true})`` reads the whole SSE body before returning."""
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        response = client.post("/chat/completions", json=stream_body())
    assert response.text.endswith("data: [DONE]\n\n")
    a = attrs(only_span(spans))
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"], a["llmtally.usage.estimated"]) == (
        1200, 300, False)
    assert "gen_ai.response.time_to_first_chunk" not in a  # the body arrived with the response


@pytest.mark.parametrize("mod", MODULES)
def test_responses_embeddings_and_completions(mod: ModuleType, fake: FakeProvider,
                                              spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        client.post("/responses", json={"model": MODEL, "input": "What is the answer?"})
        with client.stream("POST", "/responses", json={"model": MODEL, "input": "hi", "stream": True}) as r:
            r.read()
        client.post("/embeddings", json={"model": "text-embedding-3-small", "input": ["a", "b"]})
        client.post("/completions", json={"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"})
        with client.stream("POST", "/completions", json={"model": "gpt-3.5-turbo-instruct", "prompt": "hi",
                                                          "stream": True,
                                                          "stream_options": {"include_usage": True}}) as r:
            r.read()
    found = spans.get_finished_spans()
    assert [s.name for s in found] == ["chat gpt-4o-mini", "chat gpt-4o-mini", "embeddings text-embedding-3-small",
                                       "text_completion gpt-3.5-turbo-instruct",
                                       "text_completion gpt-3.5-turbo-instruct"]
    for span in found[:2]:  # the Responses API, JSON and its event stream
        a = attrs(span)
        assert a["openai.api.type"] == "responses" and a["gen_ai.response.finish_reasons"] == ("completed",)
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1200, 300)
        assert a["gen_ai.usage.reasoning.output_tokens"] == 200
        assert D(str(a["llmtally.cost.decimal"])) == GPT_4O_MINI
    a = attrs(found[2])
    assert (a["gen_ai.operation.name"], a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (
        "embeddings", 1200, 0)
    assert D(str(a["llmtally.cost.decimal"])) == EMBED
    for span in found[3:]:
        a = attrs(span)
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1200, 300)
        assert D(str(a["llmtally.cost.decimal"])) == INSTRUCT


@pytest.mark.parametrize("mod", MODULES)
def test_anthropic_messages_json_and_sse(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    body = {"model": CLAUDE, "max_tokens": 1000, "messages": MESSAGES}
    with mod.Client(base_url=fake.anthropic_url, headers=A_HEADERS) as client:
        client.post("/v1/messages", json=body)
        with client.stream("POST", "/v1/messages", json={**body, "stream": True}) as response:
            events = [line for line in response.iter_lines() if line.startswith("event: ")]
        client.post("/v1/messages/count_tokens", json=body)  # not billed inference: no span
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"
    found = spans.get_finished_spans()
    assert len(found) == 2
    for span, stream in zip(found, (False, True), strict=True):
        a = attrs(span)
        assert span.name == f"chat {CLAUDE}" and a["gen_ai.provider.name"] == "anthropic"
        assert a["gen_ai.request.stream"] is stream and a["gen_ai.request.max_tokens"] == 1000
        # input includes cache reads and writes; output from the CUMULATIVE message_delta, not start + delta
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12_000, 600)
        assert a["gen_ai.usage.cache_read.input_tokens"] == 10_000
        assert a["gen_ai.usage.cache_creation.input_tokens"] == 1_500
        assert D(str(a["llmtally.cost.decimal"])) == A_COST
        assert a["gen_ai.response.finish_reasons"] == ("end_turn",)


# --- async ---------------------------------------------------------------------------------------------

@pytest.mark.anyio
@pytest.mark.parametrize("mod", MODULES)
async def test_async_json_and_sse(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    async with mod.AsyncClient(base_url=fake.openai_url, headers=HEADERS) as client:
        await client.post("/chat/completions", json=chat_body())
        assert_chat(only_span(spans), fake, stream=False)
        spans.clear()
        async with client.stream("POST", "/chat/completions", json=stream_body()) as response:
            assert isinstance(response.stream, mod.AsyncByteStream)
            lines = [line async for line in response.aiter_lines()]
        assert lines[-2] == "data: [DONE]"
        assert_chat(only_span(spans), fake, stream=True)
    spans.clear()
    async with mod.AsyncClient(base_url=fake.anthropic_url, headers=A_HEADERS) as client:
        response = await client.send(client.build_request("POST", "/v1/messages", json={
            "model": CLAUDE, "max_tokens": 10, "messages": MESSAGES, "stream": True}), stream=True)
        await response.aread()
    assert D(str(attrs(only_span(spans))["llmtally.cost.decimal"])) == A_COST


@pytest.mark.anyio
@pytest.mark.parametrize("mod", MODULES)
async def test_async_early_break_then_exit(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    async with mod.AsyncClient(base_url=fake.openai_url, headers=HEADERS) as client:
        async with client.stream("POST", "/chat/completions", json=stream_body()) as response:
            async for _ in response.aiter_lines():
                break
            # Neither stack closes here: an abandoned async generator is only finalised by a later loop task.
            assert (response.is_closed, len(spans.get_finished_spans())) == (False, 0)
        a = attrs(only_span(spans))
        assert a["llmtally.usage.estimated"] is True and "gen_ai.response.time_to_first_chunk" in a
        spans.clear()
        await client.post("/chat/completions", json=chat_body())  # the client still works
    assert_chat(only_span(spans), fake, stream=False)


@pytest.mark.anyio
@pytest.mark.parametrize("mod", MODULES)
async def test_async_error_status_and_cut(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    async with mod.AsyncClient(base_url=fake.openai_url, headers=HEADERS) as client:
        async with client.stream("POST", "/chat/completions", json=stream_body(),
                                 headers={"X-Fake-Scenario": "error-500"}) as response:
            assert response.status_code == 500
            assert b"fake 500 error" in await response.aread()  # the app still reads the error body
        assert_rejected(only_span(spans), "500")
        spans.clear()
        with pytest.raises(mod.RemoteProtocolError):
            async with client.stream("POST", "/chat/completions", json=stream_body(),
                                     headers={"X-Fake-Scenario": "cut"}) as response:
                async for _ in response.aiter_bytes():
                    pass
    span = only_span(spans)
    assert span.status.status_code is StatusCode.ERROR and attrs(span)["error.type"] == "RemoteProtocolError"
    assert attrs(span)["llmtally.usage.estimated"] is True


# --- how streams end -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mod", MODULES)
def test_early_break_then_context_exit(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        with client.stream("POST", "/chat/completions", json=stream_body(usage=False)) as response:
            for _ in response.iter_lines():
                break
            # httpx2 closes the response when the abandoned line iterator is collected; httpx waits for the exit
            expected = {"httpx": (False, 0), "httpx2": (True, 1)}[mod.__name__]
            assert (response.is_closed, len(spans.get_finished_spans())) == expected
        a = attrs(only_span(spans))
    # No usage seen (it would come last): estimated from the request and what was read, flagged.
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.input_tokens"] > 0
    assert a["llmtally.cost.status"] == "priced"


@pytest.mark.parametrize("mod", MODULES)
def test_stream_without_usage_is_estimated(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url) as client, \
            client.stream("POST", "/chat/completions", json=stream_body(usage=False)) as response:
        response.read()
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True
    assert a["gen_ai.usage.output_tokens"] == -(-len(TEXT) // 4) == 16  # counted from the deltas
    assert a["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.parametrize("mod", MODULES)
def test_break_without_close_then_gc(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    client = mod.Client(base_url=fake.openai_url, headers=HEADERS)
    response = client.send(client.build_request("POST", "/chat/completions", json=stream_body()), stream=True)
    lines = response.iter_lines()
    next(lines)
    assert spans.get_finished_spans() == ()
    del lines, response
    gc.collect()
    assert attrs(only_span(spans))["llmtally.usage.estimated"] is True
    client.close()


@pytest.mark.parametrize("mod", MODULES)
def test_close_without_reading(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        response = client.send(client.build_request("POST", "/chat/completions", json=stream_body()), stream=True)
        response.close()
        a = attrs(only_span(spans))
        assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 0
        assert "gen_ai.response.time_to_first_chunk" not in a
        response.close()  # twice: still one span
    assert len(spans.get_finished_spans()) == 1


@pytest.mark.parametrize("mod", MODULES)
def test_cut_connection(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client, pytest.raises(mod.RemoteProtocolError), \
            client.stream("POST", "/chat/completions", json=stream_body(),
                          headers={"X-Fake-Scenario": "cut"}) as response:
        for _ in response.iter_lines():
            pass
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "RemoteProtocolError"
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] > 0  # half the text came


@pytest.mark.parametrize("mod", MODULES)
def test_error_statuses_have_zero_usage(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    pipeline = make_pipeline()
    try:
        with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
            response = client.post("/chat/completions", json=chat_body(), headers={"X-Fake-Scenario": "error-429"})
            assert response.status_code == 429
            with client.stream("POST", "/chat/completions", json=stream_body(),
                               headers={"X-Fake-Scenario": "error-400"}) as streamed:
                assert spans.get_finished_spans()[-1].attributes["error.type"] == "400"  # ended at once
                assert json.loads(streamed.read())["error"]["message"] == "fake 400 error"
        first, second = spans.get_finished_spans()
        assert_rejected(first, "429")
        assert_rejected(second, "400")
        assert first.status.description == "HTTP 429 Too Many Requests: fake 429 error"
        records = pipeline.records()
        assert [r.attributes["error.type"] for r in records] == ["429", "400"]
    finally:
        pipeline.processor.shutdown()


@pytest.mark.parametrize("mod", MODULES)
def test_connection_refused(mod: ModuleType, spans: InMemorySpanExporter) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with mod.Client(base_url=f"http://127.0.0.1:{port}/v1") as client, pytest.raises(mod.ConnectError):
        client.post("/chat/completions", json=chat_body())
    assert_rejected(only_span(spans), "ConnectError")


# --- malformed bodies ----------------------------------------------------------------------------------

def test_malformed_bodies_are_tolerated_and_counted(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    fake.add_recording("html", Recording(status=200, body=b"<html>gateway timeout</html>",
                                         headers={"content-type": "application/json"}))
    fake.add_recording("bad-sse", Recording(status=200, headers={"content-type": "text/event-stream"}, stream=True,
                                            body=b'data: {"choices": [\n\ndata: [1, 2]\n\ndata: {"choices": '
                                                 b'[{"index": 0, "delta": {"content": "abcd"}}]}\n\n'))
    fake.add_recording("not-a-dict", Recording(status=200, body=b"[1, 2, 3]",
                                               headers={"content-type": "application/json"}))
    before = _guard.malformed_payload_counts().get("openai", 0)
    with httpx.Client(base_url=fake.openai_url) as client:
        assert client.post("/chat/completions", json=chat_body(), headers={"X-Fake-Replay": "html"}).text.startswith(
            "<html>")
        with client.stream("POST", "/chat/completions", json=stream_body(),
                           headers={"X-Fake-Replay": "bad-sse"}) as response:
            response.read()
        client.post("/chat/completions", json=chat_body(), headers={"X-Fake-Replay": "not-a-dict"})
    assert _guard.malformed_payload_counts()["openai"] == before + 3
    found = spans.get_finished_spans()
    assert len(found) == 3
    for span in found:
        assert attrs(span)["llmtally.usage.estimated"] is True and span.status.status_code is StatusCode.UNSET
    assert attrs(found[1])["gen_ai.usage.output_tokens"] == 1  # the one good event: "abcd"


# --- what is left alone --------------------------------------------------------------------------------

@pytest.mark.parametrize("mod", MODULES)
def test_other_requests_pass_through(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        client.get("/chat/completions")  # not a POST
        client.post("/models", json={"model": MODEL})  # not an LLM endpoint
        client.post("/chat/completions", content=b"model=gpt-4o-mini",
                    headers={"content-type": "application/x-www-form-urlencoded"})  # not JSON
        client.post("/chat/completions", content=b"not json at all")
        client.post("/chat/completions", content=iter([json.dumps(chat_body()).encode()]))  # a streamed request body
    assert spans.get_finished_spans() == ()
    assert len(fake.requests) == 5


@pytest.mark.parametrize("mod", MODULES)
def test_suppressed_instrumentation(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        with suppress_instrumentation():
            client.post("/chat/completions", json=chat_body())
        with suppress_http_instrumentation():
            client.post("/chat/completions", json=chat_body())
        assert spans.get_finished_spans() == ()
        client.post("/chat/completions", json=chat_body())
    assert_chat(only_span(spans), fake, stream=False)


@pytest.mark.parametrize("mod", MODULES)
def test_no_context_leaks(mod: ModuleType, fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    before = trace.get_current_span()
    with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client, \
            client.stream("POST", "/chat/completions", json=stream_body()) as response:
        assert trace.get_current_span() is before  # nothing attached while the app holds the stream
        for _ in response.iter_bytes():
            assert trace.get_current_span() is before
    assert trace.get_current_span() is before
    assert_chat(only_span(spans), fake, stream=True)  # the call was instrumented: a span that leaked nothing


@pytest.mark.anyio
async def test_uninstrument_restores_send(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    import wrapt

    for mod in (httpx, httpx2):
        for cls in (mod.Client, mod.AsyncClient):
            assert isinstance(cls.__dict__["send"], wrapt.FunctionWrapper), cls
    HttpxInstrumentor().uninstrument()
    try:
        for mod in (httpx, httpx2):
            for cls in (mod.Client, mod.AsyncClient):
                assert not isinstance(cls.__dict__["send"], wrapt.FunctionWrapper), cls
            with mod.Client(base_url=fake.openai_url) as client:
                client.post("/chat/completions", json=chat_body())
            async with mod.AsyncClient(base_url=fake.openai_url) as aclient:
                await aclient.post("/chat/completions", json=chat_body())
        assert spans.get_finished_spans() == () and len(fake.requests) == 4
    finally:
        HttpxInstrumentor().instrument(tracer_provider=TRACER_PROVIDER, host_providers={"127.0.0.1": "wire"})
    with httpx.Client(base_url=fake.openai_url, headers=HEADERS) as client:
        client.post("/chat/completions", json=chat_body())
    assert_chat(only_span(spans), fake, stream=False)  # and back on


# --- providers and prices ------------------------------------------------------------------------------

def test_provider_for_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fb._settings, "host_providers", fb.parse_host_providers(
        "gw.internal=wire, 10.0.0.5:8000=vllm,bad-item,=x"))
    assert fb.provider_for("api.openai.com", 443, fb.CHAT) == "openai"
    assert fb.provider_for("api.groq.com", 443, fb.CHAT) == "groq"
    assert fb.provider_for("api.anthropic.com", 443, fb.MESSAGES) == "anthropic"
    assert fb.provider_for("api.deepseek.com", 443, fb.MESSAGES) == "deepseek"  # its Anthropic-compatible API
    assert fb.provider_for("acme.openai.azure.com", 443, fb.CHAT) == "azure.ai.openai"
    assert fb.provider_for("gw.internal", 443, fb.CHAT) == "openai"
    assert fb.provider_for("GW.internal", 443, fb.MESSAGES) == "anthropic"
    assert fb.provider_for("10.0.0.5", 8000, fb.CHAT) == "vllm"
    assert fb.provider_for("10.0.0.5", 9000, fb.CHAT) == "openai_compatible"
    assert fb.provider_for("localhost", 11434, fb.CHAT) == "ollama"
    assert fb.provider_for("vllm.internal", 8000, fb.MESSAGES) == "anthropic_compatible"
    assert fb.parse_host_providers("") == {}


def test_endpoints() -> None:
    assert fb.endpoint("/v1/chat/completions") == ("chat", "chat", "chat_completions")
    assert fb.endpoint("/openai/deployments/gpt-4o/chat/completions/") == ("chat", "chat", "chat_completions")
    assert fb.endpoint("/v1/completions") == ("completions", "text_completion", None)
    assert fb.endpoint("/api/v1/responses") == ("responses", "chat", "responses")
    assert fb.endpoint("/v1/embeddings") == ("embeddings", "embeddings", None)
    assert fb.endpoint("/anthropic/v1/messages") == ("messages", "chat", None)
    for path in ("/v1/messages/count_tokens", "/v1/messages/batches", "/v1/responses/resp_1", "/v1/models",
                 "/v1/chat/completions/chatcmpl-1/messages", "/api/chat"):
        assert fb.endpoint(path) is None, path


def test_unknown_host_is_unpriced_not_free(fake: FakeProvider, spans: InMemorySpanExporter,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fb._settings, "host_providers", {})
    with httpx.Client(base_url=fake.url, headers=HEADERS) as client:
        client.post("/v1/chat/completions", json=chat_body())
        client.post("/v1/messages", json={"model": CLAUDE, "max_tokens": 10, "messages": MESSAGES})
    chat, messages = (attrs(s) for s in spans.get_finished_spans())
    assert (chat["gen_ai.provider.name"], messages["gen_ai.provider.name"]) == ("openai_compatible",
                                                                                "anthropic_compatible")
    for a in (chat, messages):
        assert a["llmtally.cost.status"] == "unpriced" and "gen_ai.usage.cost.amount" not in a
        assert a["gen_ai.usage.input_tokens"] > 0  # still counted: tokens are exact, only the price is unknown


def test_azure_deployment_path_gives_the_model(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with httpx.Client(base_url=fake.url, headers=HEADERS) as client:
        client.post("/openai/deployments/gpt-4o-mini/chat/completions", params={"api-version": "2024-10-21"},
                    json={"messages": MESSAGES})
    a = attrs(only_span(spans))
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.usage.input_tokens"] == 1200


# --- content encodings and large bodies ----------------------------------------------------------------

def test_gzip_sse_is_decoded_as_the_app_reads(spans: InMemorySpanExporter) -> None:
    frames = b"".join(sse(c) for c in [
        {"id": "c1", "model": MODEL, "choices": [{"index": 0, "delta": {"content": TEXT}}]},
        {"id": "c1", "model": MODEL, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"id": "c1", "model": MODEL, "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 16}},
    ]) + b"data: [DONE]\r\n\r\n"
    packed = gzip.compress(frames)
    pieces = [packed[i:i + 7] for i in range(0, len(packed), 7)]  # many small compressed chunks

    def handler(request: Any, scenario: Any) -> StreamReply:
        return StreamReply(pieces, headers={"content-encoding": "gzip"})

    route = Route("POST", re.compile(r"/v1/chat/completions"), handler, openai_wire.error_reply)
    with FakeProvider(routes=[route]) as server:
        for mod in (httpx, httpx2):
            with mod.Client(base_url=server.openai_url) as client, \
                    client.stream("POST", "/chat/completions", json=stream_body()) as response:
                assert "".join(response.iter_text()).endswith("data: [DONE]\r\n\r\n")
    for span in spans.get_finished_spans():
        a = attrs(span)
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (40, 16)
        assert a["llmtally.usage.estimated"] is False
    assert len(spans.get_finished_spans()) == 2


def test_large_json_body_through_a_stream_keeps_only_its_tail(fake: FakeProvider, spans: InMemorySpanExporter,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fb, "JSON_BODY_LIMIT", 256)
    monkeypatch.setattr(fb, "JSON_TAIL", 128)
    with httpx2.Client(base_url=fake.openai_url, headers=HEADERS) as client, \
            client.stream("POST", "/embeddings", json={"model": "text-embedding-3-small",
                                                        "input": [f"text {i}" for i in range(40)]}) as response:
        size = sum(len(chunk) for chunk in response.iter_bytes(chunk_size=100))
    assert size > 1000
    a = attrs(only_span(spans))
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.response.model"]) == (1200, "text-embedding-3-small")
    assert D(str(a["llmtally.cost.decimal"])) == EMBED


def test_tail_fields() -> None:
    tail = b'0.1, 0.2]}], "model": "m-1", "note": "a \\"usage\\": {1}", "usage": {"prompt_tokens": 9}}'
    assert fb.tail_fields(tail) == {"usage": {"prompt_tokens": 9}, "model": "m-1"}
    assert fb.tail_fields(b'"usage": {"prompt_tok') == {}


# --- the SSE parser, on every split of a stream --------------------------------------------------------

class _Collect(fb._StreamHandler):
    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def on_event(self, obj: dict[str, Any]) -> None:
        self.events.append(obj)

    def usage(self) -> None:
        return None


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_sse_parser_on_every_split(newline: bytes) -> None:
    nl = newline
    stream = (b": comment" + nl + b"event: a" + nl + b"data: {\"n\": 1}" + nl + nl
              + b"data:{\"n\":" + nl + b"data: 2}" + nl + b"id: 7" + nl + nl  # two data lines joined by "\n"
              + b"data: [DONE]" + nl + nl + b"data: {\"n\": 3}")  # the last event lacks its blank line
    for cut in range(len(stream) + 1):
        handler = _Collect()
        parser = fb._SSEParser(handler)
        parser.feed(stream[:cut])
        parser.feed(stream[cut:])
        parser.finish()
        assert [e["n"] for e in handler.events] == [1, 2, 3], (cut, handler.events)
        assert not parser.malformed
    handler = _Collect()
    parser = fb._SSEParser(handler)
    for i in range(len(stream)):
        parser.feed(stream[i:i + 1])
    parser.finish()
    assert [e["n"] for e in handler.events] == [1, 2, 3]


# --- with the SDKs: counted exactly once -----------------------------------------------------------------

def openai_client(fake: FakeProvider) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=fake.openai_url, api_key="k", max_retries=0, default_headers=HEADERS)


def run_openai_calls(fake: FakeProvider) -> None:
    client = openai_client(fake)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    for _ in client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}):
        pass


@pytest.mark.usefixtures("openai_instrumented")
def test_openai_sdk_instrumented_counts_once(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    pipeline = make_pipeline()
    try:
        run_openai_calls(fake)
        records = pipeline.records()
    finally:
        pipeline.processor.shutdown()
    assert [s.instrumentation_scope.name for s in spans.get_finished_spans()] == [
        "llmtally.instrumentation.openai"] * 2  # the SDK's instrumentor has these calls: no fallback span
    assert len(records) == 2
    for record in records:
        assert D(record.attributes["llmtally.cost.decimal"]) == GPT_4O_MINI


def test_openai_sdk_with_only_the_fallback_counts_once(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    from llmtally.instrumentation.openai import OpenAIInstrumentor

    sdk_instrumentor = OpenAIInstrumentor()
    was_instrumented = sdk_instrumentor.is_instrumented_by_opentelemetry
    if was_instrumented:
        sdk_instrumentor.uninstrument()
    pipeline = make_pipeline()
    try:
        run_openai_calls(fake)
        records = pipeline.records()
    finally:
        pipeline.processor.shutdown()
        if was_instrumented:
            sdk_instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    found = spans.get_finished_spans()
    assert [s.instrumentation_scope.name for s in found] == [SCOPE, SCOPE]  # openai 3.x sends through httpx2
    assert_chat(found[0], fake, stream=False)
    assert_chat(found[1], fake, stream=True)
    assert len(records) == 2
    for record in records:
        assert D(record.attributes["llmtally.cost.decimal"]) == GPT_4O_MINI


@pytest.mark.parametrize("mod", MODULES)
def test_with_opentelemetry_instrumentation_httpx(mod: ModuleType, fake: FakeProvider,
                                                  spans: InMemorySpanExporter) -> None:
    """The upstream HTTP instrumentation alongside: its HTTP span is a child of the GenAI span, and the
    call is counted once."""
    from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor, HTTPXClientInstrumentor

    http = HTTPXClientInstrumentor() if mod is httpx else HTTPX2ClientInstrumentor()
    http.instrument(tracer_provider=TRACER_PROVIDER)
    pipeline = make_pipeline()
    try:
        with mod.Client(base_url=fake.openai_url, headers=HEADERS) as client:
            client.post("/chat/completions", json=chat_body())
            with client.stream("POST", "/chat/completions", json=stream_body()) as response:
                response.read()
        records = pipeline.records()
    finally:
        pipeline.processor.shutdown()
        http.uninstrument()
    found = spans.get_finished_spans()
    ours = [s for s in found if s.instrumentation_scope.name == SCOPE]
    theirs = [s for s in found if s.instrumentation_scope.name == "opentelemetry.instrumentation.httpx"]
    assert len(ours) == 2 and len(theirs) == 2, [(s.name, s.instrumentation_scope.name) for s in found]
    assert sorted(h.parent.span_id for h in theirs if h.parent) == sorted(o.context.span_id for o in ours)
    for http_span in theirs:
        assert not any(k.startswith("gen_ai.usage") for k in (http_span.attributes or {}))
    assert_chat(ours[0], fake, stream=False)
    assert_chat(ours[1], fake, stream=True)
    assert len(records) == 2


ANTHROPIC_SDK_SCENARIO = GLOBAL_PIPELINE + """
import json, sys, anthropic
from llmtally.instrumentation.httpx_fallback import HttpxInstrumentor
HttpxInstrumentor().instrument(tracer_provider=provider, host_providers={"127.0.0.1": "wire"})
client = anthropic.Anthropic(base_url=sys.argv[1], api_key="k", max_retries=0)
headers = {"X-Fake-Usage": sys.argv[2]}
client.messages.create(model=sys.argv[3], max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                       extra_headers=headers)
with client.messages.stream(model=sys.argv[3], max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                            extra_headers=headers) as s:
    s.get_final_message()
spans = exporter.get_finished_spans()
by_id = {s.context.span_id: s for s in spans}
records = pipeline.records()
print(json.dumps({
    "scopes": sorted(s.instrumentation_scope.name for s in spans),
    "fallback_parents": sorted(by_id[s.parent.span_id].instrumentation_scope.name for s in spans
                               if s.instrumentation_scope.name.endswith("httpx_fallback")),
    "sources": sorted(r.attributes.get("llmtally.source", "llmtally") for r in records),
    "costs": [r.attributes["llmtally.cost.decimal"] for r in records],
}))
"""


def test_anthropic_sdk_tracing_itself_with_only_the_fallback_counts_once(fake: FakeProvider) -> None:
    """anthropic >= 2 traces itself by default (span with token usage) and sends through httpx2: the
    fallback's span nests under the SDK's, and the usage processor counts each call once."""
    pytest.importorskip("anthropic")
    result = run_scenario(ANTHROPIC_SDK_SCENARIO, fake.anthropic_url, json.dumps(A_USAGE), CLAUDE,
                          drop_env=("ANTHROPIC_",))
    assert result["scopes"].count("com.anthropic.sdk.python") == 2, result
    assert result["fallback_parents"] == ["com.anthropic.sdk.python"] * 2, result
    assert result["sources"] == ["llmtally", "llmtally"], result  # llmtally's records, not the SDK's spans
    assert [D(c) for c in result["costs"]] == [A_COST, A_COST]


# --- real recorded payloads through raw httpx -------------------------------------------------------------

RECORDED = real_payloads(lambda api: api in ("openai.chat", "groq.chat", "compat.chat", "anthropic.messages"))


def test_recorded_payloads_found() -> None:
    assert len(RECORDED) == 18


@pytest.mark.parametrize("record", RECORDED, ids=[f"{r['id']}-{r['api']}" for r in RECORDED])
def test_recorded_payload_through_raw_httpx(fake: FakeProvider, spans: InMemorySpanExporter,
                                            record: dict[str, Any]) -> None:
    serve_recording(fake, record)
    request = dict(record["request"] or {})
    request.setdefault("model", "recorded-model")
    request.setdefault("messages", [{"role": "user", "content": "hi"}])
    if record["api"] == "anthropic.messages":
        request.setdefault("max_tokens", 100)
    mod = httpx2 if int(record["id"], 16) % 2 else httpx  # both stacks, deterministically
    with mod.Client(base_url=fake.url, headers={"X-Fake-Replay": record["id"]}) as client:
        if record["stream"]:
            with client.stream("POST", record["path"], json=request) as response:
                for _ in response.iter_lines():
                    pass
        else:
            client.post(record["path"], json=request)
    a = attrs(only_span(spans))
    expected = record["expected"]
    assert a["gen_ai.usage.input_tokens"] == expected["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == (expected.get("output_tokens") or 0)
    assert a.get("gen_ai.usage.cache_read.input_tokens", 0) == (expected.get("cache_read_input_tokens") or 0)
    assert a.get("gen_ai.usage.cache_creation.input_tokens", 0) == (
        expected.get("cache_creation_input_tokens") or 0)
    assert a.get("gen_ai.usage.reasoning.output_tokens", 0) == (expected.get("reasoning_output_tokens") or 0)
    assert a["llmtally.usage.estimated"] is False
