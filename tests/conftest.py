"""Shared test configuration: where the real recorded provider payloads live."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def real_payloads_path() -> Path:
    """``shared/fixtures/real-payloads.jsonl``: beside the checkout (as CI lays it out), else the
    workplace's shared folder; ``LLMTALLY_REAL_PAYLOADS`` overrides both."""
    override = os.environ.get("LLMTALLY_REAL_PAYLOADS")
    if override:
        return Path(override)
    candidates = [_REPO.parent / "shared" / "fixtures" / "real-payloads.jsonl",
                  Path("/work/shared/fixtures/real-payloads.jsonl")]
    return next((p for p in candidates if p.is_file()), candidates[0])


# --- OpenTelemetry span capture and the instrumented openai SDK ----------------------------------------

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

_EXPORTER = InMemorySpanExporter()
TRACER_PROVIDER = TracerProvider()
TRACER_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test only."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture(scope="session")
def openai_instrumented() -> Iterator[None]:
    pytest.importorskip("openai")
    from llmtally.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    instrumentor.uninstrument()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
