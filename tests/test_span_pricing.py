"""A peer's gen_ai span is read and priced once (llmtally.pricing.spans): the processor and the collector
plugin give it the same cost, service tier and older token spellings included."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from llmtally import semconv as sc
from llmtally.collector.enrich import enrich_attributes
from llmtally.pricing import PriceBook
from llmtally.pricing.spans import price_span_attributes
from tests.conftest import Pipeline, make_pipeline

BOOK = PriceBook()
START_NS = int(datetime(2026, 11, 1, 12, tzinfo=timezone.utc).timestamp()) * 10**9  # o3 flex/priority priced


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    p = make_pipeline(price_book=BOOK)
    yield p
    p.processor.shutdown()


def processor_record(pipeline: Pipeline, attrs: dict[str, Any]) -> dict[str, Any]:
    """The usage record the processor makes of one peer span (another instrumentation's scope)."""
    provider = TracerProvider()
    provider.add_span_processor(pipeline.processor)
    span = provider.get_tracer("opentelemetry.instrumentation.openai_v2").start_span(
        "chat", attributes=attrs, start_time=START_NS)
    span.end(end_time=START_NS + 10**9)
    records = pipeline.records()
    assert len(records) == 1
    return dict(records[0].attributes)


def chat(**extra: Any) -> dict[str, Any]:
    return {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "o3",
            sc.GEN_AI_USAGE_INPUT_TOKENS: 10_000, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 1_000, **extra}


# o3 per 1M tokens, input / output: standard $2 / $8, flex $1 / $4, priority $3.50 / $14.
# 10,000 in + 1,000 out: standard 0.02 + 0.008, flex 0.01 + 0.004, priority 0.035 + 0.014.
STANDARD, FLEX, PRIORITY = Decimal("0.028"), Decimal("0.014"), Decimal("0.049")


TIER_CASES = [
    ({sc.OPENAI_RESPONSE_SERVICE_TIER: "flex"}, FLEX),
    ({sc.OPENAI_REQUEST_SERVICE_TIER: "priority"}, PRIORITY),  # no served tier said: the requested one
    ({sc.OPENAI_REQUEST_SERVICE_TIER: "auto", sc.OPENAI_RESPONSE_SERVICE_TIER: "priority"}, PRIORITY),
    # a priority request downgraded to standard says "default" and is billed at the standard rate
    ({sc.OPENAI_REQUEST_SERVICE_TIER: "priority", sc.OPENAI_RESPONSE_SERVICE_TIER: "default"}, STANDARD),
    ({sc.OPENAI_REQUEST_SERVICE_TIER: "flex", sc.OPENAI_RESPONSE_SERVICE_TIER: ""}, FLEX),  # no text: not said
]


@pytest.mark.parametrize(("tiers", "expected"), TIER_CASES)
def test_processor_and_collector_price_a_tiered_span_alike(pipeline: Pipeline, tiers: dict[str, str],
                                                           expected: Decimal) -> None:
    attrs = chat(**tiers)
    record = processor_record(pipeline, attrs)
    collector = enrich_attributes(attrs, at_ns=START_NS, book=BOOK)
    assert Decimal(record[sc.LLMTALLY_COST_DECIMAL]) == Decimal(collector[sc.LLMTALLY_COST_DECIMAL]) == expected


@pytest.fixture(scope="module")
def cost_program() -> Any:
    from llmtally.collector.ottl import cost_program
    from llmtally.pricing.catalog import bundled_catalog

    return cost_program(bundled_catalog())


@pytest.mark.parametrize(("tiers", "expected"), TIER_CASES)
def test_the_generated_ottl_picks_the_same_tier(cost_program: Any, tiers: dict[str, str], expected: Decimal) -> None:
    from tests.test_collector_config import run_span

    start = datetime.fromtimestamp(START_NS // 10**9, tz=timezone.utc)
    amount = run_span(cost_program, chat(**tiers), start)["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT]
    assert abs(Decimal(amount) - expected) < Decimal("1e-15")  # OTTL arithmetic is float64


def test_a_span_with_only_completion_tokens_is_counted_by_both(pipeline: Pipeline) -> None:
    # Pre-1.27 spelling, output only: the collector priced it, the processor used to skip it.
    attrs = {sc.GEN_AI_OPERATION_NAME: "chat", sc.GEN_AI_PROVIDER_NAME: "openai",
             sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini", sc.GEN_AI_USAGE_COMPLETION_TOKENS: 300}
    record = processor_record(pipeline, attrs)
    collector = enrich_attributes(attrs, at_ns=START_NS, book=BOOK)
    assert record[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 300 and record[sc.GEN_AI_USAGE_INPUT_TOKENS] == 0
    assert collector[sc.LLMTALLY_COST_STATUS] == record[sc.LLMTALLY_COST_STATUS] == "priced"
    assert Decimal(record[sc.LLMTALLY_COST_DECIMAL]) == Decimal(collector[sc.LLMTALLY_COST_DECIMAL]) \
        == Decimal(300) * Decimal("0.60") / 10**6
    output = [p for p in pipeline.metric_points(sc.METRIC_TOKEN_USAGE)
              if p.attributes[sc.GEN_AI_TOKEN_TYPE] == sc.TokenType.OUTPUT]
    assert [p.sum for p in output] == [300]


def test_gen_ai_system_and_no_start_time_fall_back_alike() -> None:
    attrs = {sc.GEN_AI_SYSTEM: "OpenAI", sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini", sc.GEN_AI_USAGE_PROMPT_TOKENS: 1000}
    for start in (None, 0, -5, "1", 10**30):  # no usable time: priced as of now, never an error
        priced = price_span_attributes(attrs, start, BOOK)
        assert (priced.provider, priced.response_model, priced.usage.input_tokens) == ("openai", "gpt-4o-mini", 1000)
        assert priced.cost.amount == Decimal(1000) * Decimal("0.15") / 10**6
