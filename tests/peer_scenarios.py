"""Peer-instrumentation scenarios, each run in a fresh interpreter by tests/test_processor.py:
``python -m tests.peer_scenarios {both|peer-only} OPENAI_BASE_URL`` prints one JSON line of results."""

from __future__ import annotations

import json
import sys
from typing import Any

import openai
from opentelemetry.instrumentation.openai import OpenAIInstrumentor as PeerInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmtally.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import make_pipeline

HEADERS = {"X-Fake-Usage": json.dumps({"input": 1200, "output": 300, "cache_read": 1024, "reasoning": 200})}
MESSAGES = [{"role": "user", "content": "hi"}]


def main(scenario: str, base_url: str) -> dict[str, Any]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = make_pipeline()
    tracer_provider.add_span_processor(pipeline.processor)
    PeerInstrumentor().instrument(tracer_provider=tracer_provider)
    if scenario == "both":
        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider)
    client = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=HEADERS)
    if scenario == "both":
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                            stream_options={"include_usage": True}, extra_headers=HEADERS))
    costs = pipeline.metric_points("gen_ai.client.operation.cost")
    records = pipeline.records()
    return {
        "scopes": sorted(s.instrumentation_scope.name for s in exporter.get_finished_spans()),
        "cost_count": sum(p.count for p in costs),
        "cost_sum": sum(p.sum for p in costs),
        "records": len(records),
        "record_costs": [r.attributes["llmtally.cost.decimal"] for r in records],
        "sources": [r.attributes.get("llmtally.source", "llmtally") for r in records],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
