"""What the SRE kit needs from the processor beyond the semconv metrics: the prompt-cache savings counter
(the dashboards' "cache savings" panel) and exemplars carrying the call's trace and span ids (OTLP)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmtally.testing import FakeProvider
from tests.conftest import Pipeline

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.usefixtures("openai_instrumented")

USAGE = {"input": 1200, "output": 300, "cache_read": 1024}
# gpt-4o-mini: input $0.15, cache read $0.075 per 1M tokens: 1024 cached tokens saved 1024 * $0.075 / 1M.
SAVED = Decimal(1024) * (Decimal("0.15") - Decimal("0.075")) / 10**6


def chat(fake: FakeProvider, model: str = "gpt-4o-mini", usage: dict[str, int] = USAGE) -> Any:
    client = openai.OpenAI(base_url=fake.openai_url, api_key="k", max_retries=0)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                          extra_headers={"X-Fake-Usage": json.dumps(usage)})


def test_cache_savings_counter_sums_per_label_set(fake_provider: FakeProvider, pipeline: Pipeline) -> None:
    chat(fake_provider)
    chat(fake_provider)
    chat(fake_provider, usage={"input": 500, "output": 10})  # no cache read: saves nothing
    chat(fake_provider, model="house-model")  # unpriced: no savings either, never a guess
    (point,) = pipeline.metric_points("llmtally.cache.savings")
    assert point.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert point.value == pytest.approx(float(2 * SAVED), rel=1e-12)
    records = pipeline.records()
    assert Decimal(str(records[0].attributes["llmtally.cost.cache_savings"])) == SAVED  # the same figure


def test_histograms_carry_the_calls_trace_as_exemplars(fake_provider: FakeProvider, pipeline: Pipeline,
                                                       spans: InMemorySpanExporter) -> None:
    chat(fake_provider)
    (span,) = spans.get_finished_spans()
    ids = (span.context.trace_id, span.context.span_id)
    data = pipeline.reader.get_metrics_data()  # one collection: each one hands out (and resets) exemplars
    assert data is not None
    points = {m.name: list(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics
              for m in sm.metrics}
    for name in ("gen_ai.client.operation.cost", "gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        assert points[name], name
        for point in points[name]:
            assert [(e.trace_id, e.span_id) for e in point.exemplars] == [ids], name


def test_unsampled_calls_are_counted_without_exemplars(pipeline: Pipeline) -> None:
    from llmtally.instrumentation.call import CallRecord
    from llmtally.pricing import Cost
    from llmtally.usage import Usage

    record = CallRecord(
        provider="openai", operation="chat", request_model="gpt-4o-mini", response_model="gpt-4o-mini",
        response_id=None, server_address="api.openai.com", server_port=443,
        usage=Usage(input_tokens=10, output_tokens=5), cost=Cost(status="priced", amount=Decimal("0.001")),
        streaming=False, start_time_ns=1, end_time_ns=2, duration_s=0.5, time_to_first_chunk_s=None,
        error_type=None, error_message=None, trace_id=0xABC, span_id=0xDEF, sampled=False, attributes={})
    pipeline.processor.record(record)
    pipeline.processor.record(dataclasses.replace(record, sampled=True))
    (cost,) = pipeline.metric_points("gen_ai.client.operation.cost")
    assert cost.count == 2
    assert [(e.trace_id, e.span_id) for e in cost.exemplars] == [(0xABC, 0xDEF)]  # only the sampled one
