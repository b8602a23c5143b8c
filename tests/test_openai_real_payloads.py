"""Real recorded responses of OpenAI-wire APIs (OpenAI, Azure, Groq, DeepSeek, Together, Mistral),
served verbatim by the fake provider to the real ``openai`` SDK: the span's tokens must equal the
recording's expected counts."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmtally.testing import FakeProvider
from tests.conftest import real_payloads, real_payloads_path, serve_recording

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.usefixtures("openai_instrumented")

# api -> the SDK surface that produces that wire format
SURFACES = {
    "openai.chat": "chat", "azure.chat": "chat", "groq.chat": "chat", "compat.chat": "chat", "mistral.chat": "chat",
    "openai.responses": "responses", "openai.completions": "completions",
    "openai.embeddings": "embeddings", "azure.embeddings": "embeddings", "mistral.embeddings": "embeddings",
}


RECORDS = real_payloads(lambda api: api in SURFACES)


def test_fixture_file_found() -> None:
    assert len(RECORDS) >= 30, f"expected the OpenAI-wire fixtures in {real_payloads_path()}"


def _call(client: Any, surface: str, request: dict[str, Any]) -> None:
    method = {"chat": client.chat.completions.create, "responses": client.responses.create,
              "completions": client.completions.create, "embeddings": client.embeddings.create}[surface]
    accepted = set(inspect.signature(method).parameters)
    kwargs = {k: v for k, v in request.items() if k in accepted}
    extra = {k: v for k, v in request.items() if k not in accepted}
    kwargs.setdefault("model", "recorded-model")
    if surface == "chat":
        kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
    result = method(**kwargs, extra_body=extra or None)
    if kwargs.get("stream"):
        for _ in result:
            pass


@pytest.mark.parametrize("record", RECORDS, ids=[f"{r['id']}-{r['api']}" for r in RECORDS])
def test_recorded_payload_through_the_sdk(fake_provider: FakeProvider, spans: InMemorySpanExporter,
                                          record: dict[str, Any]) -> None:
    serve_recording(fake_provider, record)
    client = openai.OpenAI(base_url=fake_provider.openai_url, api_key="k", max_retries=0,
                           default_headers={"X-Fake-Replay": record["id"]})
    request = dict(record["request"]) if isinstance(record["request"], dict) else {}
    _call(client, SURFACES[record["api"]], request)
    (span,) = spans.get_finished_spans()
    a = span.attributes or {}
    expected = record["expected"]
    assert a["gen_ai.usage.input_tokens"] == expected["input_tokens"]
    assert a["gen_ai.usage.output_tokens"] == (expected.get("output_tokens") or 0)
    assert a.get("gen_ai.usage.cache_read.input_tokens", 0) == (expected.get("cache_read_input_tokens") or 0)
    assert a.get("gen_ai.usage.reasoning.output_tokens", 0) == (expected.get("reasoning_output_tokens") or 0)
    assert a["llmtally.usage.estimated"] is False
