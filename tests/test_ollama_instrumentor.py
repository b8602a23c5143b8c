"""The Ollama instrumentor driving the real ``ollama`` SDK against the fake provider speaking Ollama's native
wire format (``llmtally.testing.ollama_wire``), and real recorded Ollama responses replayed through it."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmtally.testing import FakeProvider, Recording, ollama_wire
from tests.conftest import TRACER_PROVIDER, only_span, real_payloads, serve_recording

ollama = pytest.importorskip("ollama")

MODEL = "llama3"
EMBED_MODEL = "nomic-embed-text"
USAGE = {"input": 1_200, "output": 300}
MESSAGES = [{"role": "user", "content": "What is the answer?"}]  # 19 characters: ceil(19 / 4) = 5 tokens
PROMPT = "What is the answer?"
# The fake's default answer: 63 ASCII characters in 8 stream pieces (seven of 8 characters, one of 7).
TEXT_TOKENS = 16  # ceil(63 / 4)


@pytest.fixture(scope="module", autouse=True)
def instrumented() -> Iterator[None]:
    from llmtally.instrumentation.ollama import OllamaInstrumentor

    instrumentor = OllamaInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    instrumentor.uninstrument()


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    """A fake provider with the Ollama routes only (not the default OpenAI/Anthropic/Gemini ones)."""
    with FakeProvider(routes=[*ollama_wire.ROUTES]) as server:
        yield server


_OPEN: list[Any] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(fake: FakeProvider, headers: dict[str, str] | None = None, **scenario: str) -> Any:
    """A sync client of the fake, closed after the test."""
    c = ollama.Client(host=fake.url, headers=headers or {"X-Fake-Usage": json.dumps(USAGE), **scenario})
    _OPEN.append(c)
    return c


def async_client(fake: FakeProvider, **headers: str) -> Any:
    return ollama.AsyncClient(host=fake.url, headers={"X-Fake-Usage": json.dumps(USAGE), **headers})


def assert_cost_status(a: Any) -> None:
    # A local model with no price file: an explicit $0 with status "free", never "unpriced".
    assert a["llmtally.cost.status"] == "free" and a["gen_ai.usage.cost.amount"] == 0.0


def assert_counted(span: ReadableSpan, fake: FakeProvider, operation: str, stream: bool, model: str = MODEL,
                   input_tokens: int = 1_200, output_tokens: int = 300) -> None:
    a = span.attributes or {}
    assert span.name == f"{operation} {model}" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert a["gen_ai.operation.name"] == operation
    assert a["gen_ai.provider.name"] == "ollama"
    assert a["gen_ai.request.model"] == model and a["gen_ai.response.model"] == model
    assert a["gen_ai.request.stream"] is stream
    assert (a["server.address"], a["server.port"]) == ("127.0.0.1", fake.port)
    assert a["gen_ai.usage.input_tokens"] == input_tokens
    assert a["gen_ai.usage.output_tokens"] == output_tokens
    assert a["llmtally.usage.estimated"] is False
    assert_cost_status(a)


# --- chat and generate -----------------------------------------------------------------------------

def test_chat(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake).chat(MODEL, MESSAGES)  # positional model and messages
    assert response.message.content == "This is a deterministic answer from the llmtally fake provider."
    assert (response.prompt_eval_count, response.eval_count) == (1_200, 300)
    span = only_span(spans)
    assert_counted(span, fake, "chat", stream=False)
    assert (span.attributes or {})["gen_ai.response.finish_reasons"] == ("stop",)
    assert fake.requests[-1].path == "/api/chat" and fake.requests[-1].json["stream"] is False


def test_generate(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake).generate(model=MODEL, prompt=PROMPT)
    assert response.response and response.context
    assert_counted(only_span(spans), fake, "text_completion", stream=False)
    assert fake.requests[-1].path == "/api/generate"


@pytest.mark.parametrize("method", ["chat", "generate"])
def test_sync_stream(fake: FakeProvider, spans: InMemorySpanExporter, method: str) -> None:
    c = client(fake)
    if method == "chat":
        parts = list(c.chat(model=MODEL, messages=MESSAGES, stream=True))
        text = "".join(p.message.content or "" for p in parts)
    else:
        parts = list(c.generate(model=MODEL, prompt=PROMPT, stream=True))
        text = "".join(p.response or "" for p in parts)
    assert len(parts) == 9 and parts[-1].done and text.startswith("This is a deterministic")
    assert isinstance(parts[0], ollama.ChatResponse if method == "chat" else ollama.GenerateResponse)
    span = only_span(spans)
    assert_counted(span, fake, "chat" if method == "chat" else "text_completion", stream=True)
    a = span.attributes or {}
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.response.time_to_first_chunk" in a
    assert fake.requests[-1].json["stream"] is True


@pytest.mark.anyio
@pytest.mark.parametrize("method", ["chat", "generate"])
async def test_async_and_async_stream(fake: FakeProvider, spans: InMemorySpanExporter, method: str) -> None:
    c = async_client(fake)
    operation = "chat" if method == "chat" else "text_completion"
    call = c.chat if method == "chat" else c.generate
    request: dict[str, Any] = {"messages": MESSAGES} if method == "chat" else {"prompt": PROMPT}
    await call(model=MODEL, **request)
    assert_counted(only_span(spans), fake, operation, stream=False)
    spans.clear()
    stream = await call(model=MODEL, stream=True, **request)
    n = 0
    async for _ in stream:
        n += 1
    assert n == 9
    assert_counted(only_span(spans), fake, operation, stream=True)
    await c.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_lazy_stream_request_is_sent_inside_the_call(fake: FakeProvider, spans: InMemorySpanExporter,
                                                    kind: str) -> None:
    """A stream's request is sent on the first pull, which runs with our span current: the HTTP span nests
    under it."""
    import asyncio

    httpx_instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
    instrumentor = httpx_instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    try:
        if kind == "sync":
            stream = client(fake).chat(model=MODEL, messages=MESSAGES, stream=True)
            assert fake.requests == []  # nothing sent yet
            n = len(list(stream))
        else:
            async def run() -> int:
                c = async_client(fake)
                stream = await c.chat(model=MODEL, messages=MESSAGES, stream=True)
                assert fake.requests == []
                parts = [p async for p in stream]
                await c.close()
                return len(parts)

            n = asyncio.run(run())
    finally:
        instrumentor.uninstrument()
    assert n == 9 and len(fake.requests) == 1
    by_scope = {s.instrumentation_scope.name: s for s in spans.get_finished_spans()}
    ours, http = by_scope["llmtally.instrumentation.ollama"], by_scope["opentelemetry.instrumentation.httpx"]
    assert http.parent is not None and http.parent.span_id == ours.context.span_id
    assert_counted(ours, fake, "chat", stream=True)


def test_request_options_become_attributes(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    client(fake).chat(model=MODEL, messages=MESSAGES,
                      options={"temperature": 0.2, "top_p": 0.9, "num_predict": 64, "seed": 42, "stop": ["\n"]})
    a = only_span(spans).attributes or {}
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_p"]) == (0.2, 0.9)
    assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.seed"]) == (64, 42)
    assert a["gen_ai.request.stop_sequences"] == ("\n",)



def test_request_numbers_keep_their_semconv_types(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """Whole-number sampling parameters are doubles, as semconv types them; token counts and seeds stay ints."""
    client(fake).chat(model=MODEL, messages=MESSAGES, options={"temperature": 1, "top_p": 1, "top_k": 40,
                                                               "num_predict": 64, "seed": 42})
    a = only_span(spans).attributes or {}
    for key in ("gen_ai.request.temperature", "gen_ai.request.top_p", "gen_ai.request.top_k"):
        assert type(a[key]) is float, key
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_k"]) == (1.0, 40.0)
    assert (type(a["gen_ai.request.max_tokens"]), type(a["gen_ai.request.seed"])) == (int, int)

def test_tool_call_stream(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    parts = list(client(fake, **{"X-Fake-Scenario": "tools"}).chat(model=MODEL, messages=MESSAGES, stream=True))
    assert parts[0].message.tool_calls[0].function.name == "get_weather"
    assert_counted(only_span(spans), fake, "chat", stream=True)


# --- embeddings ------------------------------------------------------------------------------------

def test_embed(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake).embed(EMBED_MODEL, ["first", "second"])
    assert len(response.embeddings) == 2
    assert_counted(only_span(spans), fake, "embeddings", stream=False, model=EMBED_MODEL, output_tokens=0)


@pytest.mark.anyio
async def test_async_embed(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = async_client(fake)
    await c.embed(model=EMBED_MODEL, input="one text")
    assert_counted(only_span(spans), fake, "embeddings", stream=False, model=EMBED_MODEL, output_tokens=0)
    await c.close()


def test_deprecated_embeddings_are_estimated(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    client(fake).embeddings(model=EMBED_MODEL, prompt="abcd" * 10)  # /api/embeddings reports no counts
    a = only_span(spans).attributes or {}
    assert a["gen_ai.operation.name"] == "embeddings"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (10, 0)  # ceil(40 / 4)
    assert a["llmtally.usage.estimated"] is True


# --- errors, missing usage, cut and abandoned streams ----------------------------------------------

@pytest.mark.anyio
async def test_rejected_requests_have_zero_usage(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake, **{"X-Fake-Scenario": "error-429"})
    with pytest.raises(ollama.ResponseError) as info:
        c.chat(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == 429 and info.value.error == "fake 429 error"
    with pytest.raises(ollama.ResponseError):
        list(c.generate(model=MODEL, prompt=PROMPT, stream=True))  # raised on first iteration
    ac = async_client(fake, **{"X-Fake-Scenario": "error-429"})
    with pytest.raises(ollama.ResponseError):
        await ac.embed(model=EMBED_MODEL, input="x")
    with pytest.raises(ollama.ResponseError):
        async for _ in await ac.chat(model=MODEL, messages=MESSAGES, stream=True):
            pass
    await ac.close()
    finished = spans.get_finished_spans()
    assert len(finished) == 4
    for span in finished:
        a = span.attributes or {}
        assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "ResponseError"
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (0, 0)
        assert a["llmtally.usage.estimated"] is False


def test_no_usage_is_estimated(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake, **{"X-Fake-Scenario": "no-usage"}).chat(model=MODEL, messages=MESSAGES)
    assert response.prompt_eval_count is None and response.eval_count is None
    a = only_span(spans).attributes or {}
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, TEXT_TOKENS)
    assert a["llmtally.usage.estimated"] is True


def test_no_usage_stream_is_estimated(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    list(client(fake, **{"X-Fake-Scenario": "no-usage"}).generate(model=MODEL, prompt=PROMPT, stream=True))
    a = only_span(spans).attributes or {}
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, TEXT_TOKENS)
    assert a["llmtally.usage.estimated"] is True


def test_malformed_usage_is_clamped(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    # prompt_eval_count "1200" (the SDK's pydantic types coerce it to 1200) and eval_count -3.
    client(fake, **{"X-Fake-Scenario": "malformed-usage"}).chat(model=MODEL, messages=MESSAGES)
    a = only_span(spans).attributes or {}
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1_200, 0)
    assert a["llmtally.usage.clamped"] is True and a["llmtally.usage.estimated"] is False


def test_prompt_from_kv_cache_reads_as_zero_input(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """Ollama omits prompt_eval_count when the whole prompt came from its KV cache: 0 input, not estimated."""
    body = {"model": MODEL, "created_at": "2024-05-24T20:57:43Z", "message": {"role": "assistant", "content": "Hi"},
            "done": True, "done_reason": "stop", "total_duration": 1, "load_duration": 1, "eval_count": 7,
            "eval_duration": 1}
    fake.add_recording("kv", Recording(status=200, body=json.dumps(body).encode(),
                                       headers={"content-type": "application/json"}))
    client(fake, headers={"X-Fake-Replay": "kv"}).chat(model=MODEL, messages=MESSAGES)
    a = only_span(spans).attributes or {}
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (0, 7)
    assert a["llmtally.usage.estimated"] is False


def test_cut_stream_is_estimated_and_errored(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    import httpx

    received = []
    with pytest.raises(httpx.HTTPError):
        for part in client(fake, **{"X-Fake-Scenario": "cut"}).chat(model=MODEL, messages=MESSAGES, stream=True):
            received.append(part.message.content)
    # 9 NDJSON lines (8 pieces + done); the fake sends the first 4 and drops the connection.
    assert len(received) == 4 and len("".join(received)) == 32
    span = only_span(spans)
    a = span.attributes or {}
    assert span.status.status_code is StatusCode.ERROR and "error.type" in a
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (5, 8)  # ceil(32 / 4)
    assert a["llmtally.usage.estimated"] is True


def test_stream_break_then_gc_ends_the_span_once(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    stream = c.chat(model=MODEL, messages=MESSAGES, stream=True)
    for _ in stream:
        break
    assert spans.get_finished_spans() == ()
    del stream
    gc.collect()
    span = only_span(spans)
    a = span.attributes or {}
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 2  # ceil(8 / 4)
    gc.collect()
    assert len(spans.get_finished_spans()) == 1


def test_stream_close_ends_the_span(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    stream = client(fake).generate(model=MODEL, prompt=PROMPT, stream=True)
    next(stream)
    stream.close()
    stream.close()
    assert len(spans.get_finished_spans()) == 1


@pytest.mark.anyio
async def test_async_stream_break_then_aclose(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = async_client(fake)
    stream = await c.generate(model=MODEL, prompt=PROMPT, stream=True)
    async for _ in stream:
        break
    await stream.aclose()
    await stream.aclose()
    span = only_span(spans)
    a = span.attributes or {}
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 2  # ceil(8 / 4)
    await c.close()


def test_module_level_helpers_are_instrumented(fake: FakeProvider, spans: InMemorySpanExporter,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``ollama.chat`` is a method of a default Client bound at import, before instrument(): rebound."""
    default = ollama.__dict__["_client"]
    monkeypatch.setattr(default._client, "base_url", fake.url)
    monkeypatch.setitem(default._client.headers, "X-Fake-Usage", json.dumps(USAGE))
    ollama.chat(model=MODEL, messages=MESSAGES)
    assert_counted(only_span(spans), fake, "chat", stream=False)


def test_suppressed_instrumentation_makes_no_span(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        client(fake).chat(model=MODEL, messages=MESSAGES)
    assert spans.get_finished_spans() == ()


# --- real recorded Ollama responses ----------------------------------------------------------------

RECORDED = real_payloads(lambda api: api in ("ollama.chat", "ollama.generate"))


def test_recorded_ollama_payloads_found() -> None:
    assert len(RECORDED) == 7


@pytest.mark.parametrize("record", RECORDED, ids=[f"{r['id']}-{r['api']}" for r in RECORDED])
def test_recorded_payload_through_the_sdk(fake: FakeProvider, spans: InMemorySpanExporter,
                                          record: dict[str, Any]) -> None:
    """Real Ollama responses (JSON and NDJSON streams, a thinking model among them), served verbatim."""
    serve_recording(fake, record, "application/x-ndjson")
    c = client(fake, headers={"X-Fake-Replay": record["id"]})
    request = record["request"]
    model = request["model"]
    if record["api"] == "ollama.chat":
        result = c.chat(model=model, messages=request["messages"], stream=record["stream"])
    else:
        result = c.generate(model=model, prompt=request["prompt"], stream=record["stream"])
    if record["stream"]:
        parts = list(result)
        assert parts[-1].done
    span = only_span(spans)
    a = span.attributes or {}
    operation = "chat" if record["api"] == "ollama.chat" else "text_completion"
    assert span.name == f"{operation} {model}" and a["gen_ai.response.model"] == model
    expected = record["expected"]
    assert a["gen_ai.usage.input_tokens"] == expected["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == expected["output_tokens"]
    assert a["llmtally.usage.estimated"] is False
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert_cost_status(a)
