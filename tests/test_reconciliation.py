"""10,000 mixed calls through the real SDK: span costs, metric costs and usage-record costs agree to the
micro-dollar, and token sums are equal."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmtally.testing import FakeProvider
from tests.conftest import Pipeline

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.usefixtures("openai_instrumented")

N = 10_000
MESSAGES = [{"role": "user", "content": "Reconcile me, please."}]


def one_call(c: Any, i: int) -> None:
    usage = {"input": 100 + (i * 37) % 5000, "output": 1 + (i * 11) % 900}
    kind = i % 10
    if kind == 3:
        usage["cache_read"] = usage["input"] // 2
    if kind in (2, 6):
        usage["reasoning"] = usage["output"] // 3
    headers = {"X-Fake-Usage": json.dumps(usage)}
    if kind == 0:  # stream with usage
        list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                       stream_options={"include_usage": True}, extra_headers=headers))
    elif kind == 1:  # stream without usage: estimated
        list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers))
    elif kind == 2:
        c.chat.completions.create(model="o3", messages=MESSAGES, extra_headers=headers)
    elif kind == 3:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers=headers)
    elif kind == 4:  # an unknown model: unpriced
        c.chat.completions.create(model="house-model-v9", messages=MESSAGES, extra_headers=headers)
    elif kind == 5:  # a rejected request
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                      extra_headers={**headers, "X-Fake-Scenario": "error-429"})
    elif kind == 6:
        c.responses.create(model="o3", input="Reconcile me, please.", extra_headers=headers)
    elif kind == 7:
        c.embeddings.create(model="text-embedding-3-small", input="Reconcile me", extra_headers=headers)
    else:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)


def test_ten_thousand_mixed_calls_reconcile(fake_provider: FakeProvider, spans: InMemorySpanExporter,
                                            pipeline: Pipeline) -> None:
    c = openai.OpenAI(base_url=fake_provider.openai_url, api_key="k", max_retries=0)
    for i in range(N):
        one_call(c, i)

    finished = spans.get_finished_spans()
    records = pipeline.records()
    assert len(finished) == N and len(records) == N

    span_attrs = [s.attributes or {} for s in finished]
    record_attrs = [r.attributes for r in records]
    span_cost = sum(Decimal(str(a["llmtally.cost.decimal"])) for a in span_attrs if "llmtally.cost.decimal" in a)
    record_cost = sum(Decimal(str(a["llmtally.cost.decimal"])) for a in record_attrs if "llmtally.cost.decimal" in a)
    metric_cost = sum(p.sum for p in pipeline.metric_points("gen_ai.client.operation.cost"))
    assert span_cost == record_cost  # both exact decimals
    assert abs(Decimal(repr(metric_cost)) - span_cost) <= Decimal("0.000001")
    assert span_cost > Decimal(1)  # a real workload, not a trivially small one

    for key, token_type in (("gen_ai.usage.input_tokens", "input"), ("gen_ai.usage.output_tokens", "output")):
        from_spans = sum(int(a[key]) for a in span_attrs)
        from_records = sum(int(a[key]) for a in record_attrs)
        from_metrics = sum(p.sum for p in pipeline.metric_points("gen_ai.client.token.usage")
                           if p.attributes["gen_ai.token.type"] == token_type)
        assert from_spans == from_records == from_metrics > 0

    leaf_total = sum(p.value for p in pipeline.metric_points("llmtally.tokens"))
    assert leaf_total == sum(int(a["gen_ai.usage.input_tokens"]) + int(a["gen_ai.usage.output_tokens"])
                             for a in span_attrs)  # disjoint leaves: no double counting
    assert sum(p.count for p in pipeline.metric_points("gen_ai.client.operation.duration")) == N
    unpriced = sum(p.value for p in pipeline.metric_points("llmtally.calls.unpriced"))
    assert unpriced == N // 10 == sum(a["llmtally.cost.status"] == "unpriced" for a in span_attrs)
    estimated = sum(p.value for p in pipeline.metric_points("llmtally.calls.estimated"))
    assert estimated == N // 10 == sum(bool(a["llmtally.usage.estimated"]) for a in record_attrs)
