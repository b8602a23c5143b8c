"""The Bedrock instrumentor driving the real ``boto3`` ``bedrock-runtime`` client (converse, converse_stream,
invoke_model, invoke_model_with_response_stream) against the fake provider speaking Bedrock's wire format
(``llmtally.testing.bedrock_wire``: restJson bodies and the binary AWS event stream), and the real recorded
Bedrock responses replayed through it. boto3 has no async client: every surface is synchronous."""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from llmtally.testing import FakeProvider, Recording, bedrock_wire
from tests.conftest import TRACER_PROVIDER, assert_rejected, attrs, cost, make_pipeline, only_span, real_payloads

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.eventstream import ChecksumMismatch, EventStream, EventStreamBuffer  # noqa: E402
from botocore.exceptions import ClientError, EventStreamError  # noqa: E402
from botocore.response import StreamingBody  # noqa: E402

D = Decimal
M = D(1_000_000)
CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"  # a cross-region inference profile
NOVA = "amazon.nova-micro-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"
TITAN = "amazon.titan-text-express-v1"
TITAN_EMBED = "amazon.titan-embed-text-v2:0"
MESSAGES = [{"role": "user", "content": [{"text": "What is the answer?"}]}]
TEXT = "This is a deterministic answer from the llmtally fake provider."  # 63 ASCII characters
TEXT_TOKENS = 16  # ceil(63 / 4): the estimate of TEXT

# semconv terms: 12,000 input tokens of which 8,000 read from and 2,000 written to the prompt cache, 800 output.
USAGE = {"input": 12_000, "output": 800, "cache_read": 8_000, "cache_write": 2_000}
# Published Bedrock prices per 1M tokens (input, output, cache read, cache write), as in the bundled catalog:
# Claude 3.5 Haiku $0.80 / $4 / $0.08 / $1; Nova Micro $0.035 / $0.14 / $0.00875 (no cache-write price:
# billed as input); Llama 3.1 8B $0.22 / $0.22; Titan Text Express $0.20 / $0.60; Titan Embed v2 $0.02.
PRICES = {CLAUDE: (D("0.80"), D("4"), D("0.08"), D("1")), NOVA: (D("0.035"), D("0.14"), D("0.00875"), D("0.035")),
          LLAMA: (D("0.22"), D("0.22"), None, None), TITAN: (D("0.20"), D("0.60"), None, None)}
# Claude: 2,000 uncached + 8,000 read + 2,000 written + 800 output.
CLAUDE_COST = (2_000 * D("0.80") + 8_000 * D("0.08") + 2_000 * D("1") + 800 * D("4")) / M
assert D("0.00744") == CLAUDE_COST
PLAIN = {"input": 1_200, "output": 300}  # models without a prompt cache


@pytest.fixture(scope="module", autouse=True)
def instrumented() -> Iterator[None]:
    from llmtally.instrumentation.bedrock import BedrockInstrumentor

    instrumentor = BedrockInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    instrumentor.uninstrument()


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IMDS, no shared config or credential files, no ambient keys or endpoint: the explicit keys and
    region of :func:`client` only, and every request goes to the fake on 127.0.0.1."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(routes=[*bedrock_wire.ROUTES]) as server:
        yield server


def client(fake: FakeProvider, usage: dict[str, int] | None = None, **headers: str) -> Any:
    """A real bedrock-runtime client of the fake: explicit keys and region, no retries; scenario headers are
    added to every request before it is signed."""
    c = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.url,
                     aws_access_key_id="AKIDTEST", aws_secret_access_key="secret",
                     config=Config(retries={"total_max_attempts": 1}))
    extra = {"X-Fake-Usage": json.dumps(usage or USAGE), **headers}

    def add_headers(request: Any, **_: Any) -> None:
        for key, value in extra.items():
            request.headers[key] = value

    c.meta.events.register("before-sign.bedrock-runtime.*", add_headers)
    return c


def assert_claude_priced(span: ReadableSpan, fake: FakeProvider, stream: bool, model: str = CLAUDE) -> None:
    a = attrs(span)
    assert span.name == f"chat {model}" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert (a["gen_ai.operation.name"], a["gen_ai.provider.name"], a["gen_ai.request.model"]) == (
        "chat", "aws.bedrock", model)
    assert (a["server.address"], a["server.port"], a["gen_ai.request.stream"]) == ("127.0.0.1", fake.port, stream)
    # Bedrock meters input without the cache (2,000); llmtally adds reads and writes back.
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12_000, 800)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 8_000
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 2_000
    assert a["llmtally.usage.estimated"] is False
    assert a["llmtally.cost.status"] == "priced"
    assert cost(a) == CLAUDE_COST
    if stream:
        assert "gen_ai.response.time_to_first_chunk" in a


def plain_cost(model: str, input_tokens: int = 1_200, output_tokens: int = 300) -> Decimal:
    rate_in, rate_out, _, _ = PRICES[model]
    return (input_tokens * rate_in + output_tokens * rate_out) / M


# --- converse ---------------------------------------------------------------------------------------------

def test_converse(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake).converse(
        modelId=CLAUDE, messages=MESSAGES, system=[{"text": "Be brief."}],
        inferenceConfig={"maxTokens": 100, "temperature": 0.3, "topP": 0.9, "stopSequences": ["END"]},
        additionalModelRequestFields={"top_k": 5})
    assert response["usage"]["inputTokens"] == 2_000  # what the app sees is Bedrock's own payload
    assert response["output"]["message"]["content"] == [{"text": TEXT}]
    span = only_span(spans)
    assert_claude_priced(span, fake, stream=False)
    a = attrs(span)
    assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.temperature"], a["gen_ai.request.top_p"]) == (
        100, 0.3, 0.9)
    assert (a["gen_ai.request.stop_sequences"], a["gen_ai.request.top_k"]) == (("END",), 5.0)
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a  # content is opt-in
    assert fake.requests[-1].path == "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse"


def test_converse_stream(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    response = client(fake).converse_stream(modelId=CLAUDE, messages=MESSAGES)
    stream = response["stream"]
    assert isinstance(stream, EventStream)  # the proxy passes for the SDK's own type
    events = list(stream)
    assert [next(iter(e)) for e in events] == ["messageStart", *["contentBlockDelta"] * 8, "contentBlockStop",
                                               "messageStop", "metadata"]
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == TEXT
    assert events[-1]["metadata"]["usage"]["cacheReadInputTokens"] == 8_000
    span = only_span(spans)
    assert_claude_priced(span, fake, stream=True)
    assert attrs(span)["gen_ai.response.finish_reasons"] == ("end_turn",)


SONNET_45 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
USAGE_1H = {"input": 10_000, "output": 500, "cache_read": 4_000, "cache_write": 3_000, "cache_write_1h": 1_000}
# Claude Sonnet 4.5 through the global profile: $3 input, $15 output, $0.30 cache read, $3.75 5-minute and $6 1-hour
# cache writes per 1M tokens. 10,000 in = 3,000 uncached + 4,000 cache reads + 3,000 writes (1,000 of them 1-hour):
#   3,000 x 3 = 9,000; 4,000 x 0.30 = 1,200; 2,000 x 3.75 = 7,500; 1,000 x 6 = 6,000; 500 x 15 = 7,500;
#   total 31,200 / 1M = 0.0312
COST_1H = (3_000 * D(3) + 4_000 * D("0.30") + 2_000 * D("3.75") + 1_000 * D(6) + 500 * D(15)) / M
BODY_1H = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
           "system": [{"type": "text", "text": "A long, stable preamble.",
                       "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
           "messages": [{"role": "user", "content": "What is the answer?"}]}


@pytest.mark.parametrize("api", ["converse", "invoke", "invoke-stream"])
def test_1h_cache_writes_priced_apart(fake: FakeProvider, spans: InMemorySpanExporter, api: str) -> None:
    """Converse reports the TTL split in usage.cacheDetails. The invoke metering headers carry only the total of
    cache writes: a request that asked for 1-hour writes has its body read through (transparently) for
    Anthropic's 5m/1h split, or they would be priced as 5-minute. The invoke-stream invocation metrics carry only
    the total too: message_start's split is kept."""
    if api == "converse":
        client(fake, USAGE_1H).converse(modelId=SONNET_45, messages=MESSAGES)
    elif api == "invoke":
        response = client(fake, USAGE_1H).invoke_model(modelId=SONNET_45, body=json.dumps(BODY_1H))
        body = response["body"]
        assert isinstance(body, StreamingBody) and spans.get_finished_spans() == ()
        assert json.loads(body.read())["usage"]["cache_creation"]["ephemeral_1h_input_tokens"] == 1_000
    else:
        response = client(fake, USAGE_1H).invoke_model_with_response_stream(modelId=SONNET_45,
                                                                             body=json.dumps(BODY_1H))
        chunks = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
        assert chunks[-1]["amazon-bedrock-invocationMetrics"]["cacheWriteInputTokenCount"] == 3_000
    a = attrs(only_span(spans))
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.cache_creation.input_tokens"]) == (10_000, 3_000)
    assert a["llmtally.usage.estimated"] is False
    assert cost(a) == COST_1H == D("0.0312")


def test_invoke_model_without_a_1h_ttl_leaves_the_body_untouched(fake: FakeProvider,
                                                                 spans: InMemorySpanExporter) -> None:
    # Without a 1-hour TTL in the request the body stays untouched and the span ends at once.
    plain = {**BODY_1H, "system": "A long, stable preamble."}
    response = client(fake, {**USAGE_1H, "cache_write_1h": 0}).invoke_model(modelId=SONNET_45,
                                                                            body=json.dumps(plain))
    assert type(response["body"]) is StreamingBody
    # all 3,000 writes at the 5-minute rate: 9,000 + 1,200 + 3,000 x 3.75 = 11,250 + 7,500 = 28,950 / 1M = 0.02895
    assert cost(attrs(only_span(spans))) == COST_1H - 1_000 * (D(6) - D("3.75")) / M == D("0.02895")


def test_ttl_split_helpers() -> None:
    from llmtally.instrumentation.bedrock import asks_1h_cache, with_ttl_split
    from llmtally.usage import Usage

    assert asks_1h_cache(BODY_1H) and not asks_1h_cache({**BODY_1H, "system": "x"}) and not asks_1h_cache(None)
    assert asks_1h_cache({"messages": [{"content": [{"cachePoint": {"type": "default", "ttl": "1h"}}]}]})
    metered = Usage.build(input_tokens=100, cache_write_tokens=30)
    assert with_ttl_split(metered, None) is metered
    assert with_ttl_split(metered, Usage.build(input_tokens=100, cache_write_tokens=30,
                                               cache_write_1h_tokens=10)).cache_write_1h_tokens == 10
    # the model's split never exceeds what Bedrock metered
    assert with_ttl_split(metered, Usage.build(input_tokens=900, cache_write_tokens=90,
                                               cache_write_1h_tokens=80)).cache_write_1h_tokens == 30


def test_converse_tool_use(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake, **{"X-Fake-Scenario": "tools"})
    response = c.converse(modelId=CLAUDE, messages=MESSAGES)
    assert response["output"]["message"]["content"][0]["toolUse"]["name"] == "get_weather"
    events = list(c.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    assert "contentBlockStart" in events[1]
    for span in spans.get_finished_spans():
        a = attrs(span)
        assert a["gen_ai.response.finish_reasons"] == ("tool_use",)
        assert cost(a) == CLAUDE_COST
    assert len(spans.get_finished_spans()) == 2


# --- invoke_model -----------------------------------------------------------------------------------------

BODIES: dict[str, dict[str, Any]] = {
    CLAUDE: {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200, "temperature": 0.5, "top_k": 40,
             "system": "Be brief.", "messages": [{"role": "user", "content": "What is the answer?"}]},
    LLAMA: {"prompt": "What is the answer?", "max_gen_len": 200, "temperature": 0.5, "top_p": 0.9},
    TITAN: {"inputText": "What is the answer?",
            "textGenerationConfig": {"maxTokenCount": 200, "temperature": 0.5, "topP": 0.9, "stopSequences": ["|"]}},
    NOVA: {"schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "What is the answer?"}]}],
           "inferenceConfig": {"max_new_tokens": 200, "temperature": 0.5, "topP": 0.9, "topK": 20}},
}
FAMILIES = [CLAUDE, LLAMA, TITAN, NOVA]


def assert_family_priced(span: ReadableSpan, model: str, stream: bool) -> None:
    a = attrs(span)
    assert span.name == f"chat {model}" and a["gen_ai.provider.name"] == "aws.bedrock"
    assert a["gen_ai.request.stream"] is stream and a["llmtally.usage.estimated"] is False
    assert a["gen_ai.request.max_tokens"] == 200 and a["gen_ai.request.temperature"] == 0.5
    if model == CLAUDE:
        assert a["gen_ai.request.top_k"] == 40.0
        assert cost(a) == CLAUDE_COST
    else:
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1_200, 300)
        assert cost(a) == plain_cost(model)


@pytest.mark.parametrize("model", FAMILIES)
def test_invoke_model(fake: FakeProvider, spans: InMemorySpanExporter, model: str) -> None:
    usage = USAGE if model == CLAUDE else PLAIN
    response = client(fake, usage).invoke_model(modelId=model, body=json.dumps(BODIES[model]))
    # Bedrock metered the call in the headers: the span is complete and the body is the app's, untouched.
    assert type(response["body"]) is StreamingBody
    span = only_span(spans)
    assert_family_priced(span, model, stream=False)
    body = json.loads(response["body"].read())
    assert TEXT in json.dumps(body)
    assert len(spans.get_finished_spans()) == 1


@pytest.mark.parametrize("model", FAMILIES)
def test_invoke_model_with_response_stream(fake: FakeProvider, spans: InMemorySpanExporter, model: str) -> None:
    usage = USAGE if model == CLAUDE else PLAIN
    response = client(fake, usage).invoke_model_with_response_stream(modelId=model, body=json.dumps(BODIES[model]))
    assert isinstance(response["body"], EventStream)
    chunks = [json.loads(e["chunk"]["bytes"]) for e in response["body"]]
    assert "amazon-bedrock-invocationMetrics" in chunks[-1]
    span = only_span(spans)
    assert_family_priced(span, model, stream=True)
    reason = {CLAUDE: "end_turn", LLAMA: "stop", TITAN: "finish", NOVA: "end_turn"}[model]
    assert attrs(span)["gen_ai.response.finish_reasons"] == (reason,)


def test_titan_embeddings(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    body = {"inputText": "What is the answer?", "dimensions": 256, "embeddingTypes": ["float"]}
    response = client(fake, {"input": 1_000, "output": 0}).invoke_model(modelId=TITAN_EMBED, body=json.dumps(body))
    assert json.loads(response["body"].read())["embedding"]
    a = attrs(only_span(spans))
    assert a["gen_ai.operation.name"] == "embeddings" and a["gen_ai.request.encoding_formats"] == ("float",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1_000, 0)
    assert cost(a) == 1_000 * D("0.02") / M  # Titan Text Embeddings V2: $0.02 per 1M tokens


# --- model ids: plain, cross-region profiles, ARNs --------------------------------------------------------

@pytest.mark.parametrize(("model", "priced_as"), [
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "regional.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("eu.anthropic.claude-3-5-haiku-20241022-v1:0", "regional.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
     "regional.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("arn:aws:bedrock:us-east-1:012345678901:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
     "regional.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("apac.amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
    ("us.meta.llama3-1-8b-instruct-v1:0", "meta.llama3-1-8b-instruct-v1:0"),
])
def test_model_ids_reported_as_given_and_priced(fake: FakeProvider, spans: InMemorySpanExporter, model: str,
                                                priced_as: str) -> None:
    client(fake, PLAIN).converse(modelId=model, messages=MESSAGES)
    a = attrs(only_span(spans))
    assert a["gen_ai.request.model"] == model
    assert a["llmtally.cost.status"] == "priced" and a["llmtally.price.model"] == priced_as


def test_application_inference_profile_is_unpriced_not_free(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    # An application inference profile's id says nothing about its model: unpriced, never $0.
    model = "arn:aws:bedrock:us-east-1:012345678901:application-inference-profile/a1b2c3d4e5f6"
    client(fake, PLAIN).converse(modelId=model, messages=MESSAGES)
    a = attrs(only_span(spans))
    assert a["llmtally.cost.status"] == "unpriced" and "gen_ai.usage.cost.amount" not in a
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (1_200, 300)


def test_global_and_regional_profiles_have_their_own_prices() -> None:
    """Newer Claude models cost 10% more through regional and geographic (us., eu., ...) endpoints than
    through a global. profile: the price-book matching must not fold one into the other."""
    from llmtally.pricing import PriceBook
    from llmtally.usage import Usage

    book = PriceBook()
    million = Usage.build(input_tokens=1_000_000)
    ids = {"global.anthropic.claude-sonnet-4-5-20250929-v1:0": D("3"),
           "us.anthropic.claude-sonnet-4-5-20250929-v1:0": D("3.3"),
           "eu.anthropic.claude-sonnet-4-5-20250929-v1:0": D("3.3"),
           "anthropic.claude-sonnet-4-5-20250929-v1:0": D("3.3"),
           "arn:aws:bedrock:us-east-1:1:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0": D("3"),
           # a global profile without its own catalog entry falls back to the model's price
           "global.amazon.nova-micro-v1:0": D("0.035")}
    for model, rate in ids.items():
        got = book.cost(million, provider="aws.bedrock", request_model=model, response_model=None).amount
        assert got == rate, model


# --- hook point, uninstrument, other services -------------------------------------------------------------

def test_client_created_before_instrument(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """botocore builds client classes at run time; the class-level hook on BaseClient sees clients made
    before instrument() as well as after."""
    from llmtally.instrumentation.bedrock import BedrockInstrumentor

    BedrockInstrumentor().uninstrument()
    try:
        early = client(fake)
        early.converse(modelId=CLAUDE, messages=MESSAGES)
        assert spans.get_finished_spans() == ()
    finally:
        BedrockInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)
    early.converse(modelId=CLAUDE, messages=MESSAGES)
    list(early.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    client(fake).converse(modelId=CLAUDE, messages=MESSAGES)
    finished = spans.get_finished_spans()
    assert len(finished) == 3
    for span in finished:
        assert_claude_priced(span, fake, stream=attrs(span)["gen_ai.request.stream"] is True)


def test_uninstrument_restores_botocore(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    import botocore.client
    import wrapt

    from llmtally.instrumentation.bedrock import BedrockInstrumentor

    assert isinstance(botocore.client.BaseClient.__dict__["_make_api_call"], wrapt.FunctionWrapper)
    BedrockInstrumentor().uninstrument()
    try:
        assert not isinstance(botocore.client.BaseClient.__dict__["_make_api_call"], wrapt.FunctionWrapper)
        c = client(fake)
        c.converse(modelId=CLAUDE, messages=MESSAGES)
        stream = c.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"]
        assert type(stream) is EventStream
        list(stream)
        assert spans.get_finished_spans() == ()
    finally:
        BedrockInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)


def test_other_operations_and_services_are_not_traced(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    c = client(fake)
    with pytest.raises(ClientError):  # the fake has no CountTokens route: a 404, not a billed call
        c.count_tokens(modelId=CLAUDE, input={"converse": {"messages": MESSAGES}})
    control = boto3.client("bedrock", region_name="us-east-1", endpoint_url=fake.url, aws_access_key_id="AKIDTEST",
                           aws_secret_access_key="secret", config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError):
        control.list_foundation_models()
    assert spans.get_finished_spans() == ()
    assert len(fake.requests) == 2  # both reached the fake on 127.0.0.1, nothing else


def test_suppressed_instrumentation_makes_no_span(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    with suppress_instrumentation():
        client(fake).converse(modelId=CLAUDE, messages=MESSAGES)
    assert spans.get_finished_spans() == ()


def test_anthropic_bedrock_client_is_counted_once(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    """The anthropic SDK's AnthropicBedrock posts to the same /model/{id}/invoke paths over httpx (botocore only
    signs): with the Bedrock, anthropic and httpx-fallback instrumentors all on, each call is the anthropic
    instrumentor's span alone (Bedrock's hook never sees it, the fallback steps aside)."""
    anthropic = pytest.importorskip("anthropic")
    from llmtally.instrumentation.anthropic import AnthropicInstrumentor
    from llmtally.instrumentation.httpx_fallback import HttpxInstrumentor

    started = [i for i in (AnthropicInstrumentor(), HttpxInstrumentor()) if not i.is_instrumented_by_opentelemetry]
    for instrumentor in started:
        instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    try:
        c = anthropic.AnthropicBedrock(aws_access_key="AKIDTEST", aws_secret_key="secret", aws_region="us-east-1",
                                       base_url=fake.url, max_retries=0)
        request = {"model": CLAUDE, "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}],
                   "extra_headers": {"X-Fake-Usage": json.dumps(USAGE)}}
        assert c.messages.create(**request).usage.cache_read_input_tokens == 8_000
        with c.messages.stream(**request) as stream:
            stream.get_final_message()
    finally:
        for instrumentor in started:
            instrumentor.uninstrument()
    found = spans.get_finished_spans()
    assert [s.instrumentation_scope.name for s in found] == ["llmtally.instrumentation.anthropic"] * 2
    for span in found:
        assert attrs(span)["gen_ai.provider.name"] == "aws.bedrock" and cost(attrs(span)) == CLAUDE_COST
    assert len(fake.requests) == 2


def test_default_fake_provider_serves_bedrock(spans: InMemorySpanExporter) -> None:
    with FakeProvider() as server:
        client(server).converse(modelId=CLAUDE, messages=MESSAGES)
    assert cost(attrs(only_span(spans))) == CLAUDE_COST


def test_entry_point_and_extra() -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["opentelemetry_instrumentor"]["llmtally_bedrock"]
    assert target == "llmtally.instrumentation.bedrock:BedrockInstrumentor"
    assert project["optional-dependencies"]["bedrock"] == ["boto3>=1.34"]
    assert "bedrock" in project["optional-dependencies"]["all"][0]


# --- errors, missing and malformed usage ------------------------------------------------------------------

def test_rejected_requests_have_zero_usage(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    throttled, failing, invalid = (client(fake, **{"X-Fake-Scenario": f"error-{s}"}) for s in (429, 500, 400))
    with pytest.raises(throttled.exceptions.ThrottlingException):
        throttled.converse(modelId=CLAUDE, messages=MESSAGES)
    with pytest.raises(throttled.exceptions.ThrottlingException):
        throttled.converse_stream(modelId=CLAUDE, messages=MESSAGES)
    with pytest.raises(failing.exceptions.InternalServerException):
        failing.invoke_model(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))
    with pytest.raises(invalid.exceptions.ValidationException):
        invalid.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))
    finished = spans.get_finished_spans()
    assert len(finished) == 4
    for span, error in zip(finished, ["ThrottlingException", "ThrottlingException", "InternalServerException",
                                      "ValidationException"], strict=True):
        assert_rejected(span, error)


def test_invalid_parameters_are_rejected_before_sending(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        client(fake).converse(modelId=CLAUDE, messages="hi")  # not a list: botocore refuses before sending
    assert_rejected(only_span(spans), "ParamValidationError")
    assert fake.requests == []


@pytest.mark.parametrize("surface", ["converse", "converse_stream", "invoke", "invoke_stream"])
def test_no_usage_is_estimated(fake: FakeProvider, spans: InMemorySpanExporter, surface: str) -> None:
    c = client(fake, **{"X-Fake-Scenario": "no-usage"})
    if surface == "converse":
        c.converse(modelId=CLAUDE, messages=MESSAGES)
    elif surface == "converse_stream":
        list(c.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    elif surface == "invoke":
        response = c.invoke_model(modelId=LLAMA, body=json.dumps(BODIES[LLAMA]))
        assert spans.get_finished_spans() == ()  # no metering headers: the call ends once the body is read
        assert json.loads(response["body"].read())["generation"] == TEXT
    else:
        list(c.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))["body"])
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True
    assert a["gen_ai.usage.output_tokens"] == TEXT_TOKENS
    assert a["gen_ai.usage.input_tokens"] > 0
    assert a["llmtally.cost.status"] == "priced"


@pytest.mark.parametrize("surface", ["converse", "converse_stream", "invoke", "invoke_stream"])
def test_malformed_usage_is_clamped(fake: FakeProvider, spans: InMemorySpanExporter, surface: str) -> None:
    c = client(fake, **{"X-Fake-Scenario": "malformed-usage"})
    if surface == "converse":
        c.converse(modelId=CLAUDE, messages=MESSAGES)
    elif surface == "converse_stream":
        list(c.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    elif surface == "invoke":
        c.invoke_model(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))["body"].read()
    else:
        list(c.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))["body"])
    a = attrs(only_span(spans))
    assert a["llmtally.usage.clamped"] is True and a["llmtally.usage.estimated"] is False
    # The uncached input "2000" (a numeric string in the headers and metrics) reads as 2,000; negative
    # output and cache counts read as 0.
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (2_000, 0)
    assert cost(a) == 2_000 * D("0.80") / M


# --- invoke_model's body: untouched with metering headers, a transparent proxy without --------------------

def serve(fake: FakeProvider, name: str, body: bytes, content_type: str = "application/json",
          **headers: str) -> None:
    fake.add_recording(name, Recording(status=200, body=body, stream=content_type != "application/json",
                                       headers={"content-type": content_type, **headers}))


ANTHROPIC_BODY = {"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
                  "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn",
                  "usage": {"input_tokens": 2_000, "cache_read_input_tokens": 8_000,
                            "cache_creation_input_tokens": 2_000, "output_tokens": 800}}


@pytest.mark.parametrize("how", ["json.load", "read-in-pieces", "iter_lines", "iter_chunks", "iterate", "next",
                                 "readinto", "readlines"])
def test_body_without_metering_headers_is_read_through(fake: FakeProvider, spans: InMemorySpanExporter,
                                                       how: str) -> None:
    """A proxy that dropped Bedrock's metering headers: the model's own usage in the body prices the call,
    read however the application reads it, and the application gets exactly the bytes it would."""
    raw = json.dumps(ANTHROPIC_BODY, indent=1).encode()
    serve(fake, "no-headers", raw)
    response = client(fake, **{"X-Fake-Replay": "no-headers"}).invoke_model(
        modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))
    body = response["body"]
    assert isinstance(body, StreamingBody) and spans.get_finished_spans() == ()
    if how == "json.load":
        got = json.dumps(json.load(body), indent=1).encode()
    elif how == "read-in-pieces":
        pieces = []
        while chunk := body.read(100):
            pieces.append(chunk)
        got = b"".join(pieces)
    elif how == "iter_lines":
        got = b"\n".join(body.iter_lines())
    elif how == "iter_chunks":
        got = b"".join(body.iter_chunks(chunk_size=10))
    elif how == "iterate":
        got = b"".join(body)
    elif how == "next":
        pieces = []
        with contextlib.suppress(StopIteration):
            while True:
                pieces.append(next(body))
        got = b"".join(pieces)
    elif how == "readinto":
        buffer, parts = bytearray(64), []
        while n := body.readinto(buffer):
            parts.append(bytes(buffer[:n]))
        got = b"".join(parts)
    else:
        got = b"".join(body.readlines())
    assert got == raw
    span = only_span(spans)
    assert_claude_priced(span, fake, stream=False)
    a = attrs(span)
    assert (a["gen_ai.response.id"], a["gen_ai.response.finish_reasons"]) == ("msg_bdrk_01", ("end_turn",))
    assert "gen_ai.response.model" not in a  # the Anthropic name would price the wrong (non-Bedrock) entry
    body.close()
    assert len(spans.get_finished_spans()) == 1  # exactly once


def test_body_closed_or_dropped_unread(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    serve(fake, "no-headers", json.dumps({"generation": TEXT, "stop_reason": "stop"}).encode())
    c = client(fake, **{"X-Fake-Replay": "no-headers"})
    c.invoke_model(modelId=LLAMA, body=json.dumps(BODIES[LLAMA]))["body"].close()
    response = c.invoke_model(modelId=LLAMA, body=json.dumps(BODIES[LLAMA]))
    assert len(spans.get_finished_spans()) == 1
    del response
    gc.collect()
    finished = spans.get_finished_spans()
    assert len(finished) == 2
    for span in finished:  # nothing of the answer was seen: input estimated, output zero, flagged
        a = attrs(span)
        assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 0
        assert span.status.status_code is StatusCode.UNSET


def test_body_with_block_ends_the_call(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    serve(fake, "no-headers", json.dumps({"generation": TEXT, "prompt_token_count": 7,
                                          "generation_token_count": 15, "stop_reason": "stop"}).encode())
    response = client(fake, **{"X-Fake-Replay": "no-headers"}).invoke_model(
        modelId=LLAMA, body=json.dumps(BODIES[LLAMA]))
    with response["body"] as raw:  # botocore hands out its raw urllib3 stream here, as without llmtally
        assert json.loads(raw.read())["generation"] == TEXT
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True  # the raw stream's bytes are the app's alone


@pytest.mark.parametrize(("model", "body", "expected"), [
    (LLAMA, {"generation": TEXT, "prompt_token_count": 7, "generation_token_count": 15, "stop_reason": "stop"},
     (7, 15)),
    (TITAN, {"inputTextTokenCount": 6, "results": [{"tokenCount": 14, "outputText": TEXT,
                                                    "completionReason": "FINISH"}]}, (6, 14)),
    (NOVA, {"output": {"message": {"role": "assistant", "content": [{"text": TEXT}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": 5, "outputTokens": 13, "totalTokens": 18}}, (5, 13)),
])
def test_model_own_counts_when_headers_are_missing(fake: FakeProvider, spans: InMemorySpanExporter, model: str,
                                                   body: dict[str, Any], expected: tuple[int, int]) -> None:
    serve(fake, "no-headers", json.dumps(body).encode())
    response = client(fake, **{"X-Fake-Replay": "no-headers"}).invoke_model(modelId=model,
                                                                             body=json.dumps(BODIES[model]))
    assert json.loads(response["body"].read()) == body
    a = attrs(only_span(spans))
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == expected
    assert a["llmtally.usage.estimated"] is False
    assert cost(a) == plain_cost(model, *expected)


def test_content_capture_opt_in(fake: FakeProvider, spans: InMemorySpanExporter,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    c = client(fake)
    c.converse(modelId=CLAUDE, messages=MESSAGES, system=[{"text": "Be brief."}])
    list(c.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
    response = c.invoke_model(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))
    assert len(spans.get_finished_spans()) == 2  # with capture on, the body is read through first
    assert json.loads(response["body"].read())["content"][0]["text"] == TEXT
    list(c.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))["body"])
    finished = spans.get_finished_spans()
    assert len(finished) == 4
    for span in finished:
        a = attrs(span)
        assert "What is the answer?" in str(a["gen_ai.input.messages"])
        assert a["gen_ai.output.messages"] == TEXT
        assert cost(a) == CLAUDE_COST  # metered usage still wins
    assert "Be brief." in str(attrs(finished[0])["gen_ai.input.messages"])


# --- the stream abuse matrix, for both stream surfaces ----------------------------------------------------

def open_stream(c: Any, surface: str, model: str = CLAUDE) -> tuple[dict[str, Any], Any]:
    if surface == "converse_stream":
        response = c.converse_stream(modelId=model, messages=MESSAGES)
        return response, response["stream"]
    response = c.invoke_model_with_response_stream(modelId=model, body=json.dumps(BODIES.get(model, {})))
    return response, response["body"]


SURFACES = ["converse_stream", "invoke_stream"]


@pytest.mark.parametrize("surface", SURFACES)
def test_events_identical_to_uninstrumented(fake: FakeProvider, spans: InMemorySpanExporter, surface: str) -> None:
    c = client(fake, PLAIN)
    _, traced = open_stream(c, surface, LLAMA)
    traced_events = list(traced)
    with suppress_instrumentation():
        _, plain = open_stream(c, surface, LLAMA)
        assert type(plain) is EventStream
        plain_events = list(plain)
    assert traced_events == plain_events and len(traced_events) > 3
    assert len(spans.get_finished_spans()) == 1


@pytest.mark.parametrize("surface", SURFACES)
def test_stream_break_then_gc(fake: FakeProvider, spans: InMemorySpanExporter, surface: str) -> None:
    response, stream = open_stream(client(fake), surface)
    for _ in stream:
        break
    assert spans.get_finished_spans() == ()
    del response, stream
    gc.collect()
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 0  # only the start seen
    assert a["gen_ai.usage.input_tokens"] > 0


@pytest.mark.parametrize("surface", SURFACES)
def test_stream_close_mid_way(fake: FakeProvider, spans: InMemorySpanExporter, surface: str) -> None:
    _, stream = open_stream(client(fake), surface)
    seen = []
    for event in stream:
        seen.append(event)
        if len(seen) == 4:
            break
    stream.close()
    stream.close()  # twice: still one span
    a = attrs(only_span(spans))
    assert a["llmtally.usage.estimated"] is True and 0 < a["gen_ai.usage.output_tokens"] < TEXT_TOKENS


@pytest.mark.parametrize("surface", SURFACES)
def test_stream_never_iterated_ends_at_gc(fake: FakeProvider, spans: InMemorySpanExporter, surface: str) -> None:
    response, stream = open_stream(client(fake), surface)
    del response, stream
    gc.collect()
    a = attrs(only_span(spans))
    # The request was sent and answered (Bedrock bills it): the input is estimated, never dropped.
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.input_tokens"] > 0


@pytest.mark.parametrize("surface", SURFACES)
def test_stream_next_and_with_fail_as_without_instrumentation(fake: FakeProvider, spans: InMemorySpanExporter,
                                                              surface: str) -> None:
    """botocore's EventStream is iterable but neither an iterator nor a context manager."""
    c = client(fake)
    errors = []
    for suppressed in (False, True):
        with suppress_instrumentation() if suppressed else contextlib.nullcontext():
            _, stream = open_stream(c, surface)
            with pytest.raises(TypeError) as not_iterator:
                next(stream)
            with pytest.raises(TypeError) as not_context, stream:
                pass
            assert len(list(stream)) > 3  # still fully usable afterwards
            errors.append((str(not_iterator.value), str(not_context.value)))
    assert errors[0] == errors[1]
    assert attrs(only_span(spans))["llmtally.usage.estimated"] is False


@pytest.mark.parametrize("surface", SURFACES)
def test_cut_stream_is_an_error_with_estimated_usage(fake: FakeProvider, spans: InMemorySpanExporter,
                                                     surface: str) -> None:
    import urllib3

    _, stream = open_stream(client(fake, **{"X-Fake-Scenario": "cut"}), surface)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        list(stream)
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "ProtocolError"
    assert a["llmtally.usage.estimated"] is True  # the usage at the end never arrived
    assert 0 < a["gen_ai.usage.output_tokens"] < TEXT_TOKENS


def _frames(surface: str, exception_first: bool) -> bytes:
    if surface == "converse_stream":
        start = bedrock_wire.event("messageStart", {"role": "assistant"}) + bedrock_wire.event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Partial answer"}})
    else:
        start = bedrock_wire.chunk_event({"generation": "Partial answer", "prompt_token_count": 7,
                                          "generation_token_count": 2, "stop_reason": None})
    error = bedrock_wire.exception_message("throttlingException", "Too many tokens, please wait.")
    return error if exception_first else start + error


@pytest.mark.parametrize("surface", SURFACES)
def test_exception_event_before_first_chunk_is_rejected(fake: FakeProvider, spans: InMemorySpanExporter,
                                                        surface: str) -> None:
    serve(fake, "throttled", _frames(surface, exception_first=True), bedrock_wire.EVENT_STREAM)
    _, stream = open_stream(client(fake, **{"X-Fake-Replay": "throttled"}), surface, LLAMA)
    with pytest.raises(EventStreamError) as caught:
        list(stream)
    assert caught.value.response["Error"]["Code"] == "throttlingException"
    assert_rejected(only_span(spans), "EventStreamError")


@pytest.mark.parametrize("surface", SURFACES)
def test_exception_event_mid_stream(fake: FakeProvider, spans: InMemorySpanExporter, surface: str) -> None:
    serve(fake, "throttled", _frames(surface, exception_first=False), bedrock_wire.EVENT_STREAM)
    _, stream = open_stream(client(fake, **{"X-Fake-Replay": "throttled"}), surface, LLAMA)
    seen = []
    with pytest.raises(EventStreamError):
        for event in stream:
            seen.append(event)
    assert seen
    span = only_span(spans)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == "EventStreamError"
    # Llama's running counts (7 in, 2 out) are not final before its last chunk: estimated from what was seen.
    assert a["llmtally.usage.estimated"] is True and a["gen_ai.usage.output_tokens"] == 4  # "Partial answer"


def test_usage_processor_counts_each_call_once(fake: FakeProvider) -> None:
    from llmtally.instrumentation.bedrock import BedrockInstrumentor

    pipeline = make_pipeline()
    provider = TracerProvider()
    provider.add_span_processor(pipeline.processor)
    BedrockInstrumentor().uninstrument()
    try:
        BedrockInstrumentor().instrument(tracer_provider=provider)
        c = client(fake)
        c.converse(modelId=CLAUDE, messages=MESSAGES)
        list(c.converse_stream(modelId=CLAUDE, messages=MESSAGES)["stream"])
        c.invoke_model(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))["body"].read()
        list(c.invoke_model_with_response_stream(modelId=CLAUDE, body=json.dumps(BODIES[CLAUDE]))["body"])
        records = pipeline.records()
        assert len(records) == 4
        for record in records:
            body = dict(record.attributes or {})
            assert body["gen_ai.provider.name"] == "aws.bedrock"
            assert D(str(body["llmtally.cost.decimal"])) == CLAUDE_COST
    finally:
        pipeline.processor.shutdown()
        BedrockInstrumentor().uninstrument()
        BedrockInstrumentor().instrument(tracer_provider=TRACER_PROVIDER)


# --- the wire encoding ------------------------------------------------------------------------------------

def test_event_stream_frames_parse_with_botocore() -> None:
    frame = bedrock_wire.event("metadata", {"usage": {"inputTokens": 1}})
    frame += bedrock_wire.exception_message("modelStreamErrorException", "boom")
    buffer = EventStreamBuffer()
    buffer.add_data(frame[:7])  # a partial prelude is held back, as botocore reads it off the socket
    assert list(buffer) == []
    buffer.add_data(frame[7:])
    first, second = list(buffer)  # CRCs validated by botocore
    assert first.headers == {":event-type": "metadata", ":content-type": "application/json",
                             ":message-type": "event"}
    assert json.loads(first.payload) == {"usage": {"inputTokens": 1}}
    assert second.headers[":message-type"] == "exception" and second.to_response_dict()["status_code"] == 400
    corrupt = bytearray(frame)
    corrupt[20] ^= 0xFF
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(corrupt))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


# --- real recorded Bedrock responses ----------------------------------------------------------------------

RECORDED = real_payloads(lambda api: api.startswith("bedrock."))
# Published Bedrock prices per 1M tokens (input, output, cache read, cache write) of the recorded models.
RECORDED_PRICES = {
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0": (D(3), D(15), D("0.30"), D("3.75")),
    "amazon.nova-micro-v1:0": (D("0.035"), D("0.14"), D("0.00875"), D("0.035")),
    "anthropic.claude-3-haiku-20240307-v1:0": (D("0.25"), D("1.25"), D("0.03"), D("0.30")),
    "anthropic.claude-3-5-haiku-20241022-v1:0": (D("0.80"), D(4), D("0.08"), D(1)),
    "anthropic.claude-3-5-sonnet-20240620-v1:0": (D(3), D(15), D("0.30"), D("3.75")),
}


def test_recorded_bedrock_payloads_found() -> None:
    assert sorted(r["api"] for r in RECORDED) == sorted(
        ["bedrock.converse"] * 2 + ["bedrock.converse_stream"] * 2 + ["bedrock.invoke"] * 2
        + ["bedrock.invoke_stream"] * 2)


@pytest.mark.parametrize("record", RECORDED, ids=[f"{r['id']}-{r['api']}" for r in RECORDED])
def test_recorded_payload_through_the_sdk(fake: FakeProvider, spans: InMemorySpanExporter,
                                          record: dict[str, Any]) -> None:
    """Real converse / converse-stream / invoke / invoke-stream responses (JSON, metering headers, binary
    event streams), served verbatim to the real boto3 client."""
    body = base64.b64decode(record["body"]) if record["body_encoding"] == "base64" else record["body"].encode()
    headers = {k.lower(): v for k, v in record["headers"].items()}
    headers.setdefault("content-type", bedrock_wire.EVENT_STREAM if record["stream"] else "application/json")
    fake.add_recording(record["id"], Recording(status=record["status"], body=body, headers=headers,
                                               stream=record["stream"]))
    c = client(fake, **{"X-Fake-Replay": record["id"]})
    model = unquote(record["path"].split("/")[2])
    request = record["request"]
    api = record["api"]
    if api == "bedrock.converse":
        response = c.converse(modelId=model, **request)
        assert response["usage"]["outputTokens"] == record["expected"]["output_tokens"]
    elif api == "bedrock.converse_stream":
        events = list(c.converse_stream(modelId=model, **request)["stream"])
        assert "metadata" in events[-1]
    elif api == "bedrock.invoke":
        response = c.invoke_model(modelId=model, body=json.dumps(request))
        assert type(response["body"]) is StreamingBody  # metered by headers: the body is untouched
        assert json.loads(response["body"].read())["type"] == "message"
    else:
        events = list(c.invoke_model_with_response_stream(modelId=model, body=json.dumps(request))["body"])
        assert "amazon-bedrock-invocationMetrics" in json.loads(events[-1]["chunk"]["bytes"])
    span = only_span(spans)
    a = attrs(span)
    expected = record["expected"]
    assert a["gen_ai.request.model"] == model
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (expected["input_tokens"],
                                                                                 expected["output_tokens"])
    cache_read = expected["cache_read_input_tokens"]
    cache_write = expected["cache_creation_input_tokens"]
    assert a.get("gen_ai.usage.cache_read.input_tokens", 0) == cache_read
    assert a.get("gen_ai.usage.cache_creation.input_tokens", 0) == cache_write
    assert a["llmtally.usage.estimated"] is False and span.status.status_code is StatusCode.UNSET
    key = model.rsplit("/", 1)[-1]
    rate_in, rate_out, rate_read, rate_write = RECORDED_PRICES[key]
    uncached = expected["input_tokens"] - cache_read - cache_write
    assert cost(a) == (uncached * rate_in + cache_read * rate_read + cache_write * rate_write
                       + expected["output_tokens"] * rate_out) / M


def test_recorded_stream_events_unchanged_by_instrumentation(fake: FakeProvider, spans: InMemorySpanExporter) -> None:
    record = next(r for r in RECORDED if r["api"] == "bedrock.invoke_stream" and "anthropic" in r["path"])
    fake.add_recording("r", Recording(status=200, body=base64.b64decode(record["body"]), stream=True,
                                      headers={"content-type": bedrock_wire.EVENT_STREAM}))
    c = client(fake, **{"X-Fake-Replay": "r"})
    model = unquote(record["path"].split("/")[2])
    traced = list(c.invoke_model_with_response_stream(modelId=model, body=json.dumps(record["request"]))["body"])
    with suppress_instrumentation():
        plain = list(c.invoke_model_with_response_stream(modelId=model, body=json.dumps(record["request"]))["body"])
    assert traced == plain
    # Bedrock's metering (98 output tokens) wins over the model's own count in message_delta (130).
    assert attrs(only_span(spans))["gen_ai.usage.output_tokens"] == 98


def test_streaming_body_proxy_is_a_real_file_object() -> None:
    """The proxy answers like botocore's StreamingBody for io helpers (readable, isinstance)."""
    from llmtally.instrumentation.bedrock import _BodyAccumulator, _TracedBody
    from llmtally.instrumentation.call import Call

    call = Call(TRACER_PROVIDER.get_tracer("t"), provider="aws.bedrock", operation="chat", request_model=LLAMA,
                server_address=None, server_port=None, streaming=False)
    raw = json.dumps({"generation": "x", "prompt_token_count": 1, "generation_token_count": 1}).encode()
    body = _TracedBody(StreamingBody(io.BytesIO(raw), len(raw)), _BodyAccumulator(call, None))
    assert isinstance(body, StreamingBody) and isinstance(body, io.IOBase)
    assert body.read() == raw and call.done
