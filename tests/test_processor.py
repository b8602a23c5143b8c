"""The usage processor: metrics, usage log records, attribution, label allow-list, peers, sampling."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import baggage
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

import llmtally
from llmtally.testing import FakeProvider
from tests.conftest import Pipeline, make_pipeline

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.usefixtures("openai_instrumented")

D = Decimal
M = D(1_000_000)
USAGE = {"input": 1200, "output": 300, "cache_read": 1024, "reasoning": 200}
HEADERS = {"X-Fake-Usage": json.dumps(USAGE)}
MESSAGES = [{"role": "user", "content": "hi"}]
# gpt-4o-mini: 176 uncached * $0.15 + 1024 cached * $0.075 + 300 output * $0.60 per 1M
COST = (D(176) * D("0.15") + D(1024) * D("0.075") + D(300) * D("0.60")) / M


def client(fake: FakeProvider) -> Any:
    return openai.OpenAI(base_url=fake.openai_url, api_key="k", max_retries=0)


def call(fake: FakeProvider, model: str = "gpt-4o-mini", **headers: str) -> Any:
    return client(fake).chat.completions.create(model=model, messages=MESSAGES, extra_headers={**HEADERS, **headers})


def only(points: list[Any]) -> Any:
    assert len(points) == 1, points
    return points[0]


def test_metrics_of_one_call(fake_provider: FakeProvider, pipeline: Pipeline) -> None:
    call(fake_provider)
    by_type = {p.attributes["gen_ai.token.type"]: p for p in pipeline.metric_points("gen_ai.client.token.usage")}
    assert (by_type["input"].sum, by_type["output"].sum) == (1200, 300)
    assert by_type["input"].attributes == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini", "server.address": "127.0.0.1", "gen_ai.token.type": "input"}
    cost = only(pipeline.metric_points("gen_ai.client.operation.cost"))
    assert cost.count == 1 and cost.sum == pytest.approx(float(COST), abs=1e-12)
    duration = only(pipeline.metric_points("gen_ai.client.operation.duration"))
    assert duration.count == 1 and 0 < duration.sum < 5
    leaves = {p.attributes["llmtally.token.kind"]: p.value for p in pipeline.metric_points("llmtally.tokens")}
    assert leaves == {"uncached_input": 176, "cache_read": 1024, "output": 100, "reasoning": 200}
    assert sum(leaves.values()) == 1200 + 300
    assert pipeline.metric_points("llmtally.calls.unpriced") == []
    assert pipeline.metric_points("llmtally.calls.estimated") == []


def test_stream_records_time_to_first_chunk(fake_provider: FakeProvider, pipeline: Pipeline) -> None:
    list(client(fake_provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                       extra_headers={"X-Fake-Delay": "0.05"}))
    ttfc = only(pipeline.metric_points("gen_ai.client.operation.time_to_first_chunk"))
    assert ttfc.count == 1 and ttfc.sum >= 0.05
    assert only(pipeline.metric_points("llmtally.calls.estimated")).value == 1


def test_unpriced_and_error_calls(fake_provider: FakeProvider, pipeline: Pipeline) -> None:
    call(fake_provider, model="my-local-model")
    with pytest.raises(openai.RateLimitError):
        call(fake_provider, **{"X-Fake-Scenario": "error-429"})
    unpriced = only(pipeline.metric_points("llmtally.calls.unpriced"))
    assert unpriced.value == 1 and unpriced.attributes["gen_ai.request.model"] == "my-local-model"
    durations = pipeline.metric_points("gen_ai.client.operation.duration")
    assert sorted(p.attributes.get("error.type", "") for p in durations) == ["", "RateLimitError"]


def test_usage_record_carries_every_field(fake_provider: FakeProvider, pipeline: Pipeline) -> None:
    with llmtally.attributes(user_id="u-1", tenant_id="acme", session_id="s-9", conversation_id="c-3",
                             feature="search", plan="pro"):
        call(fake_provider)
    (record,) = pipeline.records()
    a = dict(record.attributes)
    assert record.event_name == "llmtally.usage"
    assert (a["user.id"], a["llmtally.tenant.id"], a["session.id"], a["gen_ai.conversation.id"],
            a["llmtally.feature"], a["llmtally.plan"]) == ("u-1", "acme", "s-9", "c-3", "search", "pro")
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"], a["gen_ai.response.model"]) == \
        ("openai", "gpt-4o-mini", "gpt-4o-mini")
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.stream"] is False
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"],
            a["gen_ai.usage.cache_read.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"],
            a["gen_ai.usage.reasoning.output_tokens"]) == (1200, 300, 1024, 0, 200)
    assert a["llmtally.usage.estimated"] is False
    assert D(a["llmtally.cost.decimal"]) == COST and a["llmtally.cost.status"] == "priced"
    assert a["gen_ai.usage.cost.amount"] == pytest.approx(float(COST))
    assert D(str(a["llmtally.cost.cache_read"])) == D(1024) * D("0.075") / M
    assert a["llmtally.duration"] > 0
    assert record.trace_id and record.span_id
    assert a["llmtally.record.id"] == f"{record.trace_id:032x}-{record.span_id:016x}"
    assert "gpt-4o-mini" in str(record.body) and "$0.0002832" in str(record.body)


def test_attribution_lands_on_spans_nests_and_propagates(fake_provider: FakeProvider,
                                                         spans: InMemorySpanExporter) -> None:
    with llmtally.attributes(tenant_id="acme", user_id="u-1"), llmtally.attributes(feature="search", user_id="u-2"):
        call(fake_provider)
        carrier: dict[str, str] = {}
        W3CBaggagePropagator().inject(carrier)
    a = spans.get_finished_spans()[0].attributes or {}
    assert (a["llmtally.tenant.id"], a["user.id"], a["llmtally.feature"]) == ("acme", "u-2", "search")
    # crosses a service boundary: the baggage header carries it, and a downstream service extracts it
    downstream = W3CBaggagePropagator().extract(carrier)
    assert baggage.get_baggage("llmtally.tenant.id", downstream) == "acme"
    assert baggage.get_all() == {}  # nothing leaks out of the with blocks


@pytest.mark.anyio
async def test_attribution_decorator_is_async_safe(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    @llmtally.attributes(feature="summarise")
    async def summarise(user: str) -> None:
        with llmtally.attributes(user_id=user):
            await asyncio.sleep(0.01)  # interleave the two tasks
            async with openai.AsyncOpenAI(base_url=fake_provider.openai_url, api_key="k", max_retries=0) as ac:
                await ac.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    await asyncio.gather(summarise("alice"), summarise("bob"))
    users = sorted((s.attributes or {})["user.id"] for s in spans.get_finished_spans())
    assert users == ["alice", "bob"]
    assert {(s.attributes or {})["llmtally.feature"] for s in spans.get_finished_spans()} == {"summarise"}


def test_attribution_decorator_sync(fake_provider: FakeProvider, spans: InMemorySpanExporter) -> None:
    @llmtally.attributes(tenant_id="globex")
    def work() -> None:
        call(fake_provider)

    work()
    assert (spans.get_finished_spans()[0].attributes or {})["llmtally.tenant.id"] == "globex"


def test_no_attribution_labels_by_default(fake_provider: FakeProvider, pipeline: Pipeline) -> None:
    with llmtally.attributes(user_id="u-1", tenant_id="acme"):
        call(fake_provider)
    for point in pipeline.metric_points("gen_ai.client.token.usage"):
        assert "user.id" not in point.attributes and "llmtally.tenant.id" not in point.attributes


def test_allow_listed_labels_with_cardinality_cap(fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMTALLY_METRIC_ATTRIBUTES", "llmtally.tenant.id,llmtally.feature")
    monkeypatch.setenv("LLMTALLY_METRIC_ATTRIBUTE_LIMIT", "2")
    p = make_pipeline()
    try:
        for tenant in ("a", "b", "c", "d", "a"):
            with llmtally.attributes(tenant_id=tenant, user_id=f"user-{tenant}"):
                call(fake_provider)
        counts: dict[str, int] = {}
        for point in p.metric_points("gen_ai.client.operation.duration"):
            counts[point.attributes["llmtally.tenant.id"]] = point.count
            assert "user.id" not in point.attributes and "llmtally.feature" not in point.attributes
        assert counts == {"a": 2, "b": 1, "other": 2}
    finally:
        p.processor.shutdown()


def test_internal_errors_are_exported(fake_provider: FakeProvider, pipeline: Pipeline,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr("llmtally.instrumentation.openai._ChatAccumulator.on_item", boom)
    list(client(fake_provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    kinds = {p.attributes["llmtally.error.kind"]: p.value for p in pipeline.metric_points("llmtally.internal.errors")}
    assert kinds.get("stream.item", 0) >= 1


# --- peers ----------------------------------------------------------------------------------------
# OpenLLMetry's OpenAI instrumentation cannot be undone in-process (its uninstrument() leaves its
# wrapper on openai 3.x), so each peer scenario runs in a fresh interpreter (tests/peer_scenarios.py).

def run_peer_scenario(name: str, fake: FakeProvider) -> dict[str, Any]:
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("opentelemetry.instrumentation.openai")
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "tests.peer_scenarios", name, fake.openai_url], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_peer_and_llmtally_on_one_call_count_once(fake_provider: FakeProvider) -> None:
    r = run_peer_scenario("both", fake_provider)
    assert len(r["scopes"]) == 4 and sum(s.startswith("llmtally") for s in r["scopes"]) == 2  # both traced both
    assert r["cost_count"] == 2 and r["cost_sum"] == pytest.approx(2 * float(COST))
    assert r["records"] == 2 and [D(c) for c in r["record_costs"]] == [COST, COST]


def test_peer_spans_alone_are_priced_by_llmtally(fake_provider: FakeProvider) -> None:
    r = run_peer_scenario("peer-only", fake_provider)
    assert r["records"] == 1 and r["sources"][0].startswith("opentelemetry.instrumentation.openai")
    assert [D(c) for c in r["record_costs"]] == [COST]  # the same engine, the same price
    assert r["cost_count"] == 1


# --- exact under sampling -------------------------------------------------------------------------

def test_exact_under_one_percent_sampling(fake_provider: FakeProvider, pipeline: Pipeline,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from llmtally.instrumentation import openai as inst

    exporter = InMemorySpanExporter()
    sampled = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01)))
    sampled.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(inst._settings, "tracer", sampled.get_tracer("llmtally.instrumentation.openai"))
    c = client(fake_provider)
    for _ in range(1000):
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=HEADERS)
    duration = only(pipeline.metric_points("gen_ai.client.operation.duration"))
    assert duration.count == 1000
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in pipeline.metric_points("gen_ai.client.token.usage")}
    assert tokens == {"input": 1200 * 1000, "output": 300 * 1000}
    cost = only(pipeline.metric_points("gen_ai.client.operation.cost"))
    assert cost.count == 1000 and abs(cost.sum - float(COST * 1000)) < 1e-9
    records = pipeline.records()
    assert len(records) == 1000
    assert sum(D(r.attributes["llmtally.cost.decimal"]) for r in records) == COST * 1000
    exported = len(exporter.get_finished_spans())
    assert 0 < exported < 40, exported  # about 1% of 1,000 spans (binomial: P(outside) < 1e-9)
