"""Streams behave exactly as without llmtally, and their span ends exactly once however the caller
leaves them: exhaustion, break, close(), an exception in the loop, del + gc, task cancellation, the
raw-response and streaming-response forms. Also: opt-in usage injection, fail-open, uninstrument."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmtally.testing import FakeProvider

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.usefixtures("openai_instrumented")

MESSAGES = [{"role": "user", "content": "Count to ten."}]
STREAM_HEADERS = {"X-Fake-Usage": json.dumps({"input": 50, "output": 12}), "X-Fake-Chunks": "12"}


@pytest.fixture(autouse=True)
def no_detach_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test here may log OpenTelemetry's 'Failed to detach context' (a token held across yields)."""
    caplog.set_level(logging.WARNING)
    yield
    assert not [r for r in caplog.records if "Failed to detach context" in r.getMessage()]


def client(fake: FakeProvider) -> Any:
    return openai.OpenAI(base_url=fake.openai_url, api_key="k", max_retries=0)


def stream(fake: FakeProvider, **headers: str) -> Any:
    return client(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True},
                                                extra_headers={**STREAM_HEADERS, **headers})


def normalise(chunks: list[Any]) -> list[dict[str, Any]]:
    """Chunks without their per-request id and timestamp, for comparison across two requests."""
    return [{k: v for k, v in c.model_dump().items() if k not in ("id", "created")} for c in chunks]


def ended_once(spans: InMemorySpanExporter) -> dict[str, Any]:
    gc.collect()
    finished = spans.get_finished_spans()
    assert len(finished) == 1, [s.name for s in finished]
    return dict(finished[0].attributes or {})


def test_chunks_identical_to_an_uninstrumented_run(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    instrumented = list(stream(fake_provider))
    with suppress_instrumentation():
        plain = list(stream(fake_provider))
    assert normalise(instrumented) == normalise(plain)
    assert type(instrumented[0]) is type(plain[0])
    a = ended_once(spans)
    assert a["gen_ai.usage.output_tokens"] == 12 and a["llmtally.usage.estimated"] is False


def test_stream_object_behaves_like_the_sdk_stream(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = stream(fake_provider)
    assert isinstance(s, openai.Stream)
    assert s.response.status_code == 200 and s.response.headers["content-type"].startswith("text/event-stream")
    with s as entered:
        assert entered is s
        first = next(s)
        assert first.choices[0].delta.role == "assistant"
        rest = list(s)
    assert rest[-1].usage.prompt_tokens == 50
    ended_once(spans)


def test_break_after_one_chunk(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = stream(fake_provider)
    for _ in s:
        break
    assert spans.get_finished_spans() == ()  # still open: the caller holds the stream
    del s
    a = ended_once(spans)
    assert a["llmtally.usage.estimated"] is True  # the usage chunk never arrived


def test_close(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = stream(fake_provider)
    next(s)
    s.close()
    assert len(spans.get_finished_spans()) == 1
    s.close()  # twice is harmless
    with pytest.raises(Exception):  # noqa: B017 - whatever the SDK raises for a closed stream, unchanged
        with suppress_instrumentation():
            plain = stream(fake_provider)
        plain.close()
        next(plain)
    ended_once(spans)


def test_exception_inside_the_loop(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    with pytest.raises(ZeroDivisionError), stream(fake_provider) as s:
        for _ in s:
            1 / 0  # noqa: B018
    a = ended_once(spans)
    assert "error.type" not in a  # the caller's error, not the call's


def test_del_and_gc_without_iterating(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = stream(fake_provider)
    del s
    ended_once(spans)


def test_raw_response_stream_parse_and_abandon(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    raw = client(fake_provider).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=STREAM_HEADERS)
    parsed = raw.parse()
    next(parsed)
    del parsed, raw
    ended_once(spans)


def test_streaming_response_context_without_parse(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    with client(fake_provider).chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=STREAM_HEADERS) as response:
        lines = list(response.iter_lines())
    assert any(line.startswith("data: ") for line in lines)
    ended_once(spans)


def test_responses_stream_break(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    s = client(fake_provider).responses.create(model="gpt-4o", input="hi", stream=True, extra_headers=STREAM_HEADERS)
    for event in s:
        if event.type == "response.output_text.delta":
            break
    del s
    a = ended_once(spans)
    assert a["llmtally.usage.estimated"] is True


@pytest.mark.anyio
async def test_async_break_close_and_exhaust(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    async with openai.AsyncOpenAI(base_url=fake_provider.openai_url, api_key="k", max_retries=0) as ac:
        s = await ac.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                             stream_options={"include_usage": True}, extra_headers=STREAM_HEADERS)
        async for _ in s:
            break
        await s.close()
        assert len(spans.get_finished_spans()) == 1
        spans.clear()
        async with await ac.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                    stream_options={"include_usage": True},
                                                    extra_headers=STREAM_HEADERS) as s2:
            chunks = [c async for c in s2]
        assert chunks[-1].usage.completion_tokens == 12
    a = ended_once(spans)
    assert a["llmtally.usage.estimated"] is False


@pytest.mark.anyio
async def test_async_task_cancelled_mid_stream(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    got_one = asyncio.Event()

    async def consume(ac: Any) -> None:
        s = await ac.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                             extra_headers={**STREAM_HEADERS, "X-Fake-Chunk-Delay": "0.2"})
        async for _ in s:
            got_one.set()

    async with openai.AsyncOpenAI(base_url=fake_provider.openai_url, api_key="k", max_retries=0) as ac:
        task = asyncio.ensure_future(consume(ac))
        await asyncio.wait_for(got_one.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    a = ended_once(spans)
    assert a["error.type"] == "CancelledError"
    assert a["llmtally.usage.estimated"] is True


# --- opt-in usage injection -----------------------------------------------------------------------

@pytest.fixture
def inject_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtally.instrumentation import openai as inst

    monkeypatch.setattr(inst._settings, "inject_stream_usage", True)
    monkeypatch.setattr(inst._settings, "inject_hosts", inst._settings.inject_hosts | {"127.0.0.1"})


@pytest.mark.usefixtures("inject_for_loopback")
def test_injected_usage_is_exact_and_hidden_from_the_caller(fake_provider: FakeProvider,
                                                           spans: InMemorySpanExporter) -> None:
    c = client(fake_provider)
    seen = list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                          extra_headers=STREAM_HEADERS))
    assert fake_provider.requests[-1].json["stream_options"] == {"include_usage": True}
    with suppress_instrumentation():
        plain = list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                               extra_headers=STREAM_HEADERS))
    assert "stream_options" not in fake_provider.requests[-1].json
    assert normalise(seen) == normalise(plain)  # same chunks: no extra usage-only chunk, usage fields None
    a = ended_once(spans)
    assert a["llmtally.usage.estimated"] is False and a["gen_ai.usage.input_tokens"] == 50


@pytest.mark.usefixtures("inject_for_loopback")
def test_caller_who_asked_for_usage_still_gets_it(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    chunks = list(stream(fake_provider))
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 50
    ended_once(spans)


def test_injection_is_off_by_default(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    list(client(fake_provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert "stream_options" not in fake_provider.requests[-1].json


# --- fail-open ------------------------------------------------------------------------------------

def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("llmtally bug")


INTERNALS = [
    "llmtally.instrumentation.openai._plan",
    "llmtally.instrumentation._stainless._handle",
    "llmtally.instrumentation.openai._finish_from_object",
    "llmtally.instrumentation.openai.from_openai_chat",
    "llmtally.instrumentation.openai._ChatAccumulator.on_item",
    "llmtally.instrumentation.openai._ChatAccumulator.usage",
    "llmtally.instrumentation.call.Call.__init__",
    "llmtally.instrumentation.call.Call._finish",
    "llmtally.instrumentation.call.Call.enter",
    "llmtally.instrumentation.call.usage_attributes",
    "llmtally.instrumentation.call.cost_attributes",
    "llmtally.pricing.engine.PriceBook.cost",
    "llmtally.instrumentation.openai.estimate_prompt_tokens",
    "opentelemetry.sdk.trace.Tracer.start_span",
]


@pytest.mark.parametrize("target", INTERNALS)
def test_every_internal_failure_leaves_the_call_unchanged(fake_provider: FakeProvider, spans: InMemorySpanExporter,
                                                          monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    from llmtally.instrumentation._guard import internal_error_counts

    c = client(fake_provider)
    with suppress_instrumentation():
        expected_json = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()
        expected_chunks = normalise(list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                   stream=True)))
    before = sum(internal_error_counts().values())
    monkeypatch.setattr(target, _boom)
    got_json = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).model_dump()
    got_chunks = normalise(list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)))
    drop = ("id", "created")
    assert {k: v for k, v in got_json.items() if k not in drop} == \
        {k: v for k, v in expected_json.items() if k not in drop}
    assert got_chunks == expected_chunks
    assert sum(internal_error_counts().values()) > before  # swallowed, but counted


# --- uninstrument and zero-code -------------------------------------------------------------------

def test_uninstrument_restores_the_sdk(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    import openai._base_client as base

    from llmtally.instrumentation.openai import OpenAIInstrumentor
    from tests.conftest import TRACER_PROVIDER

    assert hasattr(base.SyncAPIClient.request, "__wrapped__")
    OpenAIInstrumentor().uninstrument()
    try:
        assert not hasattr(base.SyncAPIClient.request, "__wrapped__")
        assert not hasattr(base.AsyncAPIClient.request, "__wrapped__")
        client(fake_provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert spans.get_finished_spans() == ()
    finally:
        OpenAIInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)
    client(fake_provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(spans.get_finished_spans()) == 1


def test_opentelemetry_instrument_zero_code(fake_provider: FakeProvider, tmp_path: Any) -> None:
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    tool = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert tool, "opentelemetry-instrument is installed with opentelemetry-instrumentation"
    example = Path(__file__).resolve().parents[1] / "examples" / "openai_chat.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    env.update({
        "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "zero-code-test",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai,httpx,httpx2",  # peers installed for other tests
        "OPENAI_BASE_URL": fake_provider.openai_url, "OPENAI_API_KEY": "sk-test-secret",
    })
    proc = subprocess.run([tool, sys.executable, str(example)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spans = []
    decoder = json.JSONDecoder()
    text, i = proc.stdout, 0
    while (start := text.find("{", i)) != -1:
        try:
            obj, i = decoder.raw_decode(text, start)
        except ValueError:
            i = start + 1
            continue
        if isinstance(obj, dict) and "attributes" in obj and "name" in obj:
            spans.append(obj)
    names = [s["name"] for s in spans]
    assert names == ["chat gpt-4o-mini", "chat gpt-4o-mini"], names
    for span in spans:
        a = span["attributes"]
        assert a["gen_ai.provider.name"] == "openai" and a["llmtally.cost.status"] == "priced"
        assert a["gen_ai.usage.input_tokens"] == 25  # the fake's default usage
        assert span["resource"]["attributes"]["service.name"] == "zero-code-test"
    assert "sk-test-secret" not in proc.stdout
