"""Normalisers against each SDK's own response and usage types (and their dumped / wire-JSON forms).

Every expected number is derived by hand from the SDK's documented semantics, cited per provider. Each
SDK is optional: its tests skip when it is not installed.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from decimal import Decimal
from typing import Any

import pytest

from llmtally import usage
from llmtally.usage import Usage


def same_usage(normalise: Any, *forms: Any) -> Usage:
    """Normalise every form of one payload; they must all give one Usage, which is returned."""
    results = [normalise(form) for form in forms]
    for form, result in zip(forms, results, strict=True):
        assert result == results[0], f"{type(form).__name__} form differs: {result} != {results[0]}"
    assert sum(results[0].leaves().values()) == results[0].total_tokens
    return results[0]


# =====================================================================================================
# OpenAI (openai/types/completion_usage.py, openai/types/responses/response_usage.py):
# prompt_tokens / input_tokens include cached_tokens; completion_tokens / output_tokens include
# reasoning_tokens ("like reasoning tokens, these tokens are still counted in the total completion tokens").
# =====================================================================================================


def _chat_completion(usage_obj: Any) -> Any:
    from openai.types.chat import ChatCompletion
    from openai.types.chat.chat_completion import Choice
    from openai.types.chat.chat_completion_message import ChatCompletionMessage

    return ChatCompletion(
        id="chatcmpl-1",
        object="chat.completion",
        created=1700000000,
        model="o4-mini-2025-04-16",
        choices=[
            Choice(
                index=0, finish_reason="stop", message=ChatCompletionMessage(role="assistant", content="ok")
            )
        ],
        usage=usage_obj,
    )


def test_openai_chat_completion() -> None:
    pytest.importorskip("openai")
    from openai.types import CompletionUsage
    from openai.types.completion_usage import CompletionTokensDetails, PromptTokensDetails

    u = CompletionUsage(
        prompt_tokens=1200,
        completion_tokens=300,
        total_tokens=1500,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=1000, audio_tokens=50, image_tokens=60),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=200, audio_tokens=30),
    )
    response = _chat_completion(u)
    got = same_usage(
        usage.from_openai_chat,
        response,
        u,
        response.model_dump(),
        json.loads(response.model_dump_json()),
        u.model_dump(),
    )
    # input 1200 already includes the 1000 cached: uncached = 1200 - 1000 = 200
    # output 300 already includes the 200 reasoning: visible = 300 - 200 = 100
    assert got == Usage(
        input_tokens=1200,
        output_tokens=300,
        cache_read_tokens=1000,
        reasoning_tokens=200,
        input_audio_tokens=50,
        input_image_tokens=60,
        output_audio_tokens=30,
    )
    assert got.uncached_input_tokens == 200
    assert got.visible_output_tokens == 100
    assert got.total_tokens == u.total_tokens


def test_openai_chat_cache_write_tokens() -> None:
    pytest.importorskip("openai")
    from openai.types import CompletionUsage
    from openai.types.completion_usage import PromptTokensDetails

    # PromptTokensDetails.cache_write_tokens: "prompt tokens written to cache", part of prompt_tokens
    u = CompletionUsage(
        prompt_tokens=1000,
        completion_tokens=10,
        total_tokens=1010,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=0, cache_write_tokens=800),
    )
    got = same_usage(usage.from_openai_chat, u, u.model_dump(exclude_none=True))
    assert (got.input_tokens, got.cache_read_tokens, got.cache_write_tokens) == (1000, 0, 800)
    assert got.uncached_input_tokens == 200  # 1000 - 0 - 800
    assert not got.clamped


def test_openai_chat_stream_final_chunk() -> None:
    pytest.importorskip("openai")
    from openai.types.chat import ChatCompletionChunk

    # With stream_options.include_usage the last chunk has empty choices and the usage.
    wire = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1731456250,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": 75,
            "completion_tokens": 51,
            "total_tokens": 126,
            "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        },
    }
    chunk = ChatCompletionChunk.model_validate(wire)
    got = same_usage(usage.from_openai_chat, chunk, wire, chunk.model_dump())
    assert got == Usage(input_tokens=75, output_tokens=51, cache_read_tokens=64)


def test_openai_legacy_completion() -> None:
    pytest.importorskip("openai")
    from openai.types import Completion, CompletionChoice, CompletionUsage

    response = Completion(
        id="cmpl-1",
        object="text_completion",
        created=1,
        model="davinci-002",
        choices=[CompletionChoice(index=0, text="x", finish_reason="length", logprobs=None)],
        usage=CompletionUsage(prompt_tokens=8, completion_tokens=16, total_tokens=24),
    )
    got = same_usage(usage.from_openai_chat, response, response.model_dump())
    assert got == Usage(input_tokens=8, output_tokens=16)


def test_openai_compatible_extras_in_model_extra() -> None:
    pytest.importorskip("openai")
    from openai.types.chat import ChatCompletionChunk

    # OpenRouter's usage.cost, DeepSeek's prompt_cache_hit_tokens and Groq's x_groq.usage are not in the
    # SDK's types: pydantic keeps them in model_extra.
    openrouter = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.0001}
    got = same_usage(usage.from_openai_chat, _chat_usage(openrouter), openrouter)
    assert got.provider_cost == Decimal("0.0001")

    deepseek = {
        "prompt_tokens": 12,
        "completion_tokens": 89,
        "total_tokens": 101,
        "prompt_cache_hit_tokens": 8,
        "prompt_cache_miss_tokens": 4,
    }
    # prompt 12 = 8 hit + 4 miss: the hits are the cache reads
    got = same_usage(usage.from_openai_chat, _chat_usage(deepseek), deepseek)
    assert (got.input_tokens, got.cache_read_tokens, got.uncached_input_tokens) == (12, 8, 4)

    groq_wire = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "llama3-8b-8192",
        "choices": [],
        "x_groq": {
            "id": "req_1",
            "usage": {"prompt_tokens": 18, "completion_tokens": 73, "total_tokens": 91},
        },
    }
    chunk = ChatCompletionChunk.model_validate(groq_wire)
    got = same_usage(usage.from_openai_chat, chunk, groq_wire)
    assert got == Usage(input_tokens=18, output_tokens=73)


def _chat_usage(wire: dict[str, Any]) -> Any:
    from openai.types import CompletionUsage

    return CompletionUsage.model_validate(wire)


def test_openai_responses() -> None:
    pytest.importorskip("openai")
    from openai.types.responses import Response, ResponseCompletedEvent, ResponseUsage
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    u = ResponseUsage(
        input_tokens=2048,
        input_tokens_details=InputTokensDetails(cached_tokens=1536, cache_write_tokens=256),
        output_tokens=1014,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=832),
        total_tokens=3062,
    )
    response = Response(
        id="resp_1",
        object="response",
        created_at=1.0,
        model="o4-mini",
        output=[],
        parallel_tool_calls=True,
        tool_choice="auto",
        tools=[],
        usage=u,
    )
    event = ResponseCompletedEvent(type="response.completed", sequence_number=9, response=response)
    got = same_usage(
        usage.from_openai_responses,
        response,
        u,
        event.response,
        response.model_dump(),
        json.loads(response.model_dump_json()),
    )
    # input 2048 includes 1536 read + 256 written: uncached = 2048 - 1536 - 256 = 256
    # output 1014 includes 832 reasoning: visible = 1014 - 832 = 182
    assert got == Usage(
        input_tokens=2048,
        output_tokens=1014,
        cache_read_tokens=1536,
        cache_write_tokens=256,
        reasoning_tokens=832,
    )
    assert got.uncached_input_tokens == 256
    assert got.visible_output_tokens == 182
    assert got.total_tokens == u.total_tokens


def test_openai_embeddings() -> None:
    pytest.importorskip("openai")
    from openai.types import CreateEmbeddingResponse, Embedding
    from openai.types.create_embedding_response import Usage as EmbeddingUsage

    response = CreateEmbeddingResponse(
        data=[Embedding(embedding=[0.1, 0.2], index=0, object="embedding")],
        model="text-embedding-3-small",
        object="list",
        usage=EmbeddingUsage(prompt_tokens=8, total_tokens=8),
    )
    got = same_usage(usage.from_openai_embeddings, response, response.usage, response.model_dump())
    assert got == Usage(input_tokens=8)


def test_openai_images_gpt_image() -> None:
    pytest.importorskip("openai")
    from openai.types import Image, ImagesResponse
    from openai.types.images_response import Usage as ImagesUsage
    from openai.types.images_response import UsageInputTokensDetails, UsageOutputTokensDetails

    response = ImagesResponse(
        created=1,
        data=[Image(b64_json="aGk="), Image(b64_json="aGk=")],
        usage=ImagesUsage(
            input_tokens=50,
            input_tokens_details=UsageInputTokensDetails(image_tokens=40, text_tokens=10),
            output_tokens=4200,
            output_tokens_details=UsageOutputTokensDetails(image_tokens=4160, text_tokens=40),
            total_tokens=4250,
        ),
    )
    got = same_usage(usage.from_openai_images, response, response.model_dump())
    # output 4200 = 4160 image + 40 text (UsageOutputTokensDetails): only 4160 are image tokens
    assert got == Usage(
        input_tokens=50,
        output_tokens=4200,
        input_image_tokens=40,
        output_image_tokens=4160,
        images_generated=2,
    )


def test_openai_images_without_output_details_and_dalle() -> None:
    pytest.importorskip("openai")
    from openai.types import Image, ImagesResponse
    from openai.types.images_response import Usage as ImagesUsage
    from openai.types.images_response import UsageInputTokensDetails

    response = ImagesResponse(
        created=1,
        data=[Image(b64_json="aGk=")],
        usage=ImagesUsage(
            input_tokens=20,
            input_tokens_details=UsageInputTokensDetails(image_tokens=0, text_tokens=20),
            output_tokens=1056,
            total_tokens=1076,
        ),
    )
    got = same_usage(usage.from_openai_images, response, response.model_dump())
    # no output_tokens_details: every output token is an image token
    assert (got.output_tokens, got.output_image_tokens, got.images_generated) == (1056, 1056, 1)

    dalle = ImagesResponse(created=1, data=[Image(url="https://x/1.png"), Image(url="https://x/2.png")])
    got = same_usage(usage.from_openai_images, dalle, dalle.model_dump())
    assert got == Usage(images_generated=2)


# =====================================================================================================
# Anthropic (anthropic/types/usage.py): input_tokens, cache_read_input_tokens and
# cache_creation_input_tokens are disjoint; the SDK's own OTel span sums them for gen_ai.usage.input_tokens
# (anthropic/lib/_tracing/_response.py, set_usage_sums). output_tokens is inclusive of
# output_tokens_details.thinking_tokens (anthropic/types/output_tokens_details.py: "Always <= output_tokens").
# =====================================================================================================


def _anthropic_message(usage_obj: Any) -> Any:
    from anthropic.types import Message, TextBlock

    return Message(
        id="msg_1",
        type="message",
        role="assistant",
        model="claude-sonnet-4-5",
        content=[TextBlock(type="text", text="hi")],
        stop_reason="end_turn",
        stop_sequence=None,
        usage=usage_obj,
    )


def test_anthropic_message_with_cache_and_thinking() -> None:
    pytest.importorskip("anthropic")
    from anthropic.types import CacheCreation, OutputTokensDetails
    from anthropic.types import Usage as AnthropicUsage

    u = AnthropicUsage(
        input_tokens=100,
        cache_read_input_tokens=2000,
        cache_creation_input_tokens=500,
        cache_creation=CacheCreation(ephemeral_5m_input_tokens=200, ephemeral_1h_input_tokens=300),
        output_tokens=400,
        output_tokens_details=OutputTokensDetails(thinking_tokens=150),
    )
    message = _anthropic_message(u)
    got = same_usage(
        usage.from_anthropic, message, u, message.model_dump(), json.loads(message.model_dump_json())
    )
    # input = 100 uncached + 2000 read + 500 written = 2600; writes 500 = 200 (5m) + 300 (1h)
    assert got == Usage(
        input_tokens=2600,
        output_tokens=400,
        cache_read_tokens=2000,
        cache_write_tokens=500,
        cache_write_1h_tokens=300,
        reasoning_tokens=150,
    )
    assert got.uncached_input_tokens == 100
    assert got.cache_write_5m_tokens == 200
    assert got.visible_output_tokens == 250  # 400 - 150


def test_anthropic_input_matches_the_sdks_own_span() -> None:
    pytest.importorskip("anthropic")
    tracing = pytest.importorskip("anthropic.lib._tracing._response")
    set_usage_sums = getattr(tracing, "set_usage_sums", None)
    if set_usage_sums is None:
        pytest.skip("this anthropic version has no set_usage_sums")
    from anthropic.types import Usage as AnthropicUsage

    class Span:
        def __init__(self) -> None:
            self.attributes: dict[str, Any] = {}

        def set_attribute(self, key: str, value: Any) -> None:
            self.attributes[key] = value

    message = _anthropic_message(
        AnthropicUsage(
            input_tokens=4, cache_read_input_tokens=18131, cache_creation_input_tokens=7, output_tokens=50
        )
    )
    span = Span()
    set_usage_sums(span, message, complete=True, iterations=False)
    # the SDK's gen_ai.usage.input_tokens: 4 + 18131 + 7 = 18142
    assert span.attributes["gen_ai.usage.input_tokens"] == 18142
    assert usage.from_anthropic(message).input_tokens == 18142


def test_anthropic_cache_breakdown_without_total() -> None:
    pytest.importorskip("anthropic")
    from anthropic.types import CacheCreation
    from anthropic.types import Usage as AnthropicUsage

    # Only the TTL breakdown: writes = 10 (5m) + 20 (1h) = 30; input = 5 + 30 = 35
    u = AnthropicUsage(
        input_tokens=5,
        output_tokens=1,
        cache_creation=CacheCreation(ephemeral_5m_input_tokens=10, ephemeral_1h_input_tokens=20),
    )
    got = same_usage(usage.from_anthropic, u, u.model_dump())
    assert (got.input_tokens, got.cache_write_tokens, got.cache_write_1h_tokens) == (35, 30, 20)
    assert not got.clamped


def test_anthropic_stream_merge_matches_sdk_accumulator() -> None:
    pytest.importorskip("anthropic")
    from anthropic.types import (
        CacheCreation,
        MessageDeltaUsage,
        OutputTokensDetails,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
    )
    from anthropic.types import Usage as AnthropicUsage
    from anthropic.types.raw_message_delta_event import Delta

    start = RawMessageStartEvent(
        type="message_start",
        message=_anthropic_message(
            AnthropicUsage(
                input_tokens=596,
                cache_read_input_tokens=1000,
                cache_creation_input_tokens=64,
                cache_creation=CacheCreation(ephemeral_5m_input_tokens=0, ephemeral_1h_input_tokens=64),
                output_tokens=3,
            )
        ),
    )
    delta = RawMessageDeltaEvent(
        type="message_delta",
        delta=Delta(stop_reason="end_turn", stop_sequence=None),
        # message_delta usage is cumulative (anthropic/types/message_delta_usage.py)
        usage=MessageDeltaUsage(
            output_tokens=99, output_tokens_details=OutputTokensDetails(thinking_tokens=28)
        ),
    )
    merged = usage.merge_anthropic_stream_usage(start.message.usage, delta.usage)
    got = usage.from_anthropic(merged)
    # output is the delta's cumulative 99, not 3 + 99; input = 596 + 1000 + 64 = 1660
    assert got == Usage(
        input_tokens=1660,
        output_tokens=99,
        cache_read_tokens=1000,
        cache_write_tokens=64,
        cache_write_1h_tokens=64,
        reasoning_tokens=28,
    )
    wire = usage.merge_anthropic_stream_usage(
        start.model_dump()["message"]["usage"], json.loads(delta.model_dump_json())["usage"]
    )
    assert usage.from_anthropic(wire) == got

    streaming = pytest.importorskip("anthropic.lib.streaming._messages")
    accumulate = getattr(streaming, "accumulate_event", None)
    if accumulate is None:
        pytest.skip("this anthropic version has no accumulate_event")
    snapshot = accumulate(event=start, current_snapshot=None, json_bufs={})
    snapshot = accumulate(event=delta, current_snapshot=snapshot, json_bufs={})
    assert usage.from_anthropic(snapshot) == got


# =====================================================================================================
# Google GenAI (google/genai/types.py, GenerateContentResponseUsageMetadata): prompt_token_count includes
# cached content; total_token_count = prompt + candidates + tool_use_prompt + thoughts, so thoughts are
# outside candidates (add to output) and tool-use prompt tokens outside prompt (add to input).
# =====================================================================================================


def test_google_genai_usage_metadata() -> None:
    genai_types = pytest.importorskip("google.genai.types")
    MediaModality = genai_types.MediaModality
    Count = genai_types.ModalityTokenCount

    um = genai_types.GenerateContentResponseUsageMetadata(
        prompt_token_count=1000,
        cached_content_token_count=600,
        tool_use_prompt_token_count=50,
        candidates_token_count=200,
        thoughts_token_count=300,
        total_token_count=1550,
        prompt_tokens_details=[
            Count(modality=MediaModality.TEXT, token_count=900),
            Count(modality=MediaModality.AUDIO, token_count=100),
        ],
        candidates_tokens_details=[
            Count(modality=MediaModality.TEXT, token_count=180),
            Count(modality=MediaModality.IMAGE, token_count=20),
        ],
    )
    response = genai_types.GenerateContentResponse(usage_metadata=um)
    wire = response.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert "usageMetadata" in wire and "promptTokenCount" in wire["usageMetadata"]  # camelCase wire form
    got = same_usage(
        usage.from_google_genai,
        response,
        um,
        response.model_dump(),  # snake_case with MediaModality enums
        wire,
        wire["usageMetadata"],
        genai_types.GenerateContentResponse.model_validate(wire),
    )
    # input = 1000 prompt (600 cached inside) + 50 tool-use prompt = 1050
    # output = 200 candidates + 300 thoughts = 500; 1050 + 500 = 1550 = total_token_count
    assert got == Usage(
        input_tokens=1050,
        output_tokens=500,
        cache_read_tokens=600,
        reasoning_tokens=300,
        input_audio_tokens=100,
        output_image_tokens=20,
    )
    assert got.total_tokens == um.total_token_count
    assert got.uncached_input_tokens == 450  # 1050 - 600


def test_google_genai_usage_from_wire_json_parsed_by_sdk() -> None:
    genai_types = pytest.importorskip("google.genai.types")
    # a recorded Gemini API payload (thinking model, no cache)
    wire = {
        "usageMetadata": {
            "promptTokenCount": 109,
            "candidatesTokenCount": 29,
            "totalTokenCount": 227,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 109}],
            "thoughtsTokenCount": 89,
        }
    }
    response = genai_types.GenerateContentResponse.model_validate(wire)
    got = same_usage(usage.from_google_genai, response, wire, response.model_dump())
    # output = 29 + 89 = 118; 109 + 118 = 227
    assert got == Usage(input_tokens=109, output_tokens=118, reasoning_tokens=89)


def test_vertex_int_enum_modalities() -> None:
    # Vertex AI's REST (proto JSON with enums as ints) can send modality 1 = TEXT, 2 = IMAGE, 4 = AUDIO
    # (google.cloud.aiplatform.v1 Modality). No SDK needed: this is the wire-dict path.
    wire = {
        "usageMetadata": {
            "promptTokenCount": 128,
            "candidatesTokenCount": 22,
            "totalTokenCount": 575,
            "trafficType": 1,
            "promptTokensDetails": [
                {"modality": 1, "tokenCount": 100},
                {"modality": 4, "tokenCount": 20},
                {"modality": 2, "tokenCount": 8},
            ],
            "candidatesTokensDetails": [{"modality": 1, "tokenCount": 12}, {"modality": 4, "tokenCount": 10}],
            "thoughtsTokenCount": 425,
        }
    }
    got = usage.from_google_genai(wire)
    # input 128 (100 text + 20 audio + 8 image); output 22 + 425 thoughts = 447; 128 + 447 = 575
    assert got == Usage(
        input_tokens=128,
        output_tokens=447,
        reasoning_tokens=425,
        input_audio_tokens=20,
        input_image_tokens=8,
        output_audio_tokens=10,
    )


# =====================================================================================================
# AWS Bedrock: no Python types; boto3 returns dicts shaped by botocore's service model
# (botocore/data/bedrock-runtime/2023-09-30/service-2.json). TokenUsage: inputTokens excludes the cache
# (AWS prompt-caching guide: total input = inputTokens + cacheReadInputTokens + cacheWriteInputTokens).
# =====================================================================================================


def _bedrock_model() -> Any:
    botocore_session = pytest.importorskip("botocore.session")
    return botocore_session.get_session().get_service_model("bedrock-runtime")


def test_bedrock_service_model_field_names() -> None:
    model = _bedrock_model()
    token_usage = model.shape_for("TokenUsage")
    assert {
        "inputTokens",
        "outputTokens",
        "totalTokens",
        "cacheReadInputTokens",
        "cacheWriteInputTokens",
    } <= set(token_usage.members)
    assert model.operation_model("Converse").output_shape.members["usage"].name == "TokenUsage"
    assert model.shape_for("ConverseStreamMetadataEvent").members["usage"].name == "TokenUsage"
    if "cacheDetails" in token_usage.members:
        detail = model.shape_for("CacheDetail")
        assert {"ttl", "inputTokens"} <= set(detail.members)
        assert {"5m", "1h"} <= set(detail.members["ttl"].enum)


def test_bedrock_converse_parsed_by_botocore() -> None:
    model = _bedrock_model()
    from botocore.parsers import create_parser

    body = {
        "output": {"message": {"role": "assistant", "content": [{"text": "hi"}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 10,
            "outputTokens": 90,
            "cacheReadInputTokens": 3000,
            "cacheWriteInputTokens": 1200,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}, {"ttl": "5m", "inputTokens": 200}],
            "totalTokens": 4300,
        },
        "metrics": {"latencyMs": 100},
    }
    parsed = create_parser(model.protocol).parse(
        {"status_code": 200, "headers": {}, "body": json.dumps(body).encode()},
        model.operation_model("Converse").output_shape,
    )
    got = same_usage(usage.from_bedrock_converse, parsed, parsed["usage"], body)
    # input = 10 uncached + 3000 read + 1200 written = 4210; 4210 + 90 = 4300 = totalTokens
    # writes 1200 = 1000 with ttl 1h + 200 with ttl 5m
    expected_1h = 1000 if "cacheDetails" in parsed["usage"] else 0
    assert got == Usage(
        input_tokens=4210,
        output_tokens=90,
        cache_read_tokens=3000,
        cache_write_tokens=1200,
        cache_write_1h_tokens=expected_1h,
    )
    assert got.total_tokens == body["usage"]["totalTokens"]


def _event_stream_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One AWS event-stream frame (prelude, string headers, payload, CRC32s) as Bedrock sends it."""
    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        headers += (
            bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
        )
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(headers) + len(body) + 4, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


def _parse_event_stream(model: Any, operation: str, data: bytes) -> list[dict[str, Any]]:
    from botocore.eventstream import EventStream
    from botocore.parsers import EventStreamJSONParser

    class Raw:
        def stream(self) -> Any:
            yield data

        def close(self) -> None:
            pass

    output = model.operation_model(operation).output_shape
    member = output.serialization.get("payload") or next(iter(output.members))
    return list(EventStream(Raw(), output.members[member], EventStreamJSONParser(), operation))


def test_bedrock_converse_stream_metadata_event() -> None:
    model = _bedrock_model()
    data = _event_stream_message("messageStart", {"role": "assistant"}) + _event_stream_message(
        "metadata",
        {
            "usage": {
                "inputTokens": 4,
                "outputTokens": 50,
                "cacheReadInputTokens": 18131,
                "cacheWriteInputTokens": 0,
                "totalTokens": 18185,
            },
            "metrics": {"latencyMs": 317},
        },
    )
    events = _parse_event_stream(model, "ConverseStream", data)
    metadata = events[-1]["metadata"]
    got = usage.from_bedrock_converse(metadata)
    # input = 4 + 18131 + 0 = 18135; 18135 + 50 = 18185 = totalTokens
    assert got == Usage(input_tokens=18135, output_tokens=50, cache_read_tokens=18131)
    assert usage.from_bedrock_converse(metadata["usage"]) == got


def test_bedrock_invoke_model_headers_via_botocore() -> None:
    model = _bedrock_model()
    from botocore.parsers import create_parser

    headers = {
        "Content-Type": "application/json",
        "X-Amzn-Bedrock-Input-Token-Count": "4",
        "X-Amzn-Bedrock-Output-Token-Count": "50",
        "X-Amzn-Bedrock-Cache-Read-Input-Token-Count": "0",
        "X-Amzn-Bedrock-Cache-Write-Input-Token-Count": "18131",
    }
    parsed = create_parser(model.protocol).parse(
        {"status_code": 200, "headers": headers, "body": b"{}"},
        model.operation_model("InvokeModel").output_shape,
    )
    http_headers = parsed["ResponseMetadata"]["HTTPHeaders"]  # what boto3 users see: lower-cased
    assert "x-amzn-bedrock-input-token-count" in http_headers
    got = usage.from_bedrock_headers(http_headers)
    assert got is not None
    assert usage.from_bedrock_headers(headers) == got
    # input = 4 + 0 + 18131 = 18135 (the header counts are disjoint, like Anthropic's)
    assert got == Usage(input_tokens=18135, output_tokens=50, cache_write_tokens=18131)
    assert not got.clamped  # header strings are clean counts
    assert usage.from_bedrock_headers({"content-type": "application/json"}) is None


def test_bedrock_invoke_model_stream_invocation_metrics() -> None:
    model = _bedrock_model()
    last = {
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": 702,
            "outputTokenCount": 98,
            "cacheReadInputTokenCount": 100,
            "cacheWriteInputTokenCount": 20,
            "invocationLatency": 3042,
            "firstByteLatency": 791,
        },
    }
    data = _event_stream_message("chunk", {"bytes": base64.b64encode(json.dumps(last).encode()).decode()})
    events = _parse_event_stream(model, "InvokeModelWithResponseStream", data)
    chunk = json.loads(events[-1]["chunk"]["bytes"])  # botocore already base64-decoded the blob
    got = usage.from_bedrock_invocation_metrics(chunk["amazon-bedrock-invocationMetrics"])
    # input = 702 + 100 + 20 = 822
    assert got == Usage(input_tokens=822, output_tokens=98, cache_read_tokens=100, cache_write_tokens=20)


# =====================================================================================================
# Mistral (mistralai/client/models/usageinfo.py): OpenAI-shaped UsageInfo, extra="allow"; mistralai's own
# tracing (mistralai/extra/observability/otel.py) reports prompt_tokens as input and
# prompt_tokens_details.cached_tokens as the cache read part of it.
# =====================================================================================================


def test_mistral_chat_completion() -> None:
    models = pytest.importorskip("mistralai.client.models")
    u = models.UsageInfo.model_validate(
        {
            "prompt_tokens": 20,
            "completion_tokens": 18,
            "total_tokens": 38,
            "prompt_tokens_details": {"cached_tokens": 10},
        }
    )
    response = models.ChatCompletionResponse(
        id="1",
        object="chat.completion",
        model="mistral-small-latest",
        created=1,
        choices=[
            models.ChatCompletionChoice(
                index=0, message=models.AssistantMessage(content="hi"), finish_reason="stop"
            )
        ],
        usage=u,
    )
    got = same_usage(
        usage.from_mistral, response, u, response.model_dump(), json.loads(response.model_dump_json())
    )
    # prompt 20 includes 10 cached: uncached 10
    assert got == Usage(input_tokens=20, output_tokens=18, cache_read_tokens=10)
    assert got.uncached_input_tokens == 10


def test_mistral_stream_chunk_and_embeddings() -> None:
    models = pytest.importorskip("mistralai.client.models")
    chunk = models.CompletionChunk.model_validate(
        {
            "id": "1",
            "model": "mistral-tiny",
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "total_tokens": 54, "completion_tokens": 43},
        }
    )
    got = same_usage(usage.from_mistral, chunk, chunk.model_dump())
    assert got == Usage(input_tokens=11, output_tokens=43)

    embeddings = models.EmbeddingResponse.model_validate(
        {
            "id": "1",
            "object": "list",
            "model": "mistral-embed",
            "data": [{"object": "embedding", "embedding": [0.1], "index": 0}],
            "usage": {"prompt_tokens": 21, "total_tokens": 21, "completion_tokens": 0},
        }
    )
    got = same_usage(usage.from_mistral, embeddings, embeddings.model_dump())
    assert got == Usage(input_tokens=21)


# =====================================================================================================
# Cohere (cohere/types/usage.py, usage_tokens.py, usage_billed_units.py; v1 api_meta*.py): `tokens` are
# all tokens the model saw (cached included, `cached_tokens` "prompt tokens that hit the inference cache"),
# `billed_units` what is charged. Counts are typed float.
# =====================================================================================================


def test_cohere_v2_chat_response() -> None:
    cohere = pytest.importorskip("cohere")
    from cohere.v2 import V2ChatResponse

    u = cohere.Usage(
        billed_units=cohere.UsageBilledUnits(input_tokens=377, output_tokens=113),
        tokens=cohere.UsageTokens(input_tokens=577, output_tokens=113),
        cached_tokens=576,
    )
    response = V2ChatResponse(
        id="1",
        finish_reason="COMPLETE",
        message=cohere.AssistantMessageResponse(role="assistant"),
        usage=u,
    )
    assert isinstance(response.usage.tokens.input_tokens, float)  # the SDK types counts as floats
    got = same_usage(
        usage.from_cohere, response, u, response.model_dump(), json.loads(response.model_dump_json())
    )
    # input 577 includes the 576 cached (uncached 1); billed: 377 in, 113 out
    assert got == Usage(
        input_tokens=577,
        output_tokens=113,
        cache_read_tokens=576,
        billed_input_tokens=377,
        billed_output_tokens=113,
    )
    assert not got.clamped  # 577.0 is a clean count


def test_cohere_v2_stream_message_end() -> None:
    cohere = pytest.importorskip("cohere")
    event = cohere.ChatMessageEndEvent(
        delta=cohere.ChatMessageEndEventDelta(
            finish_reason="COMPLETE",
            usage=cohere.Usage(
                billed_units=cohere.UsageBilledUnits(input_tokens=12, output_tokens=64),
                tokens=cohere.UsageTokens(input_tokens=212, output_tokens=64),
                cached_tokens=208,
            ),
        )
    )
    got = same_usage(usage.from_cohere, event.delta, event.delta.model_dump())
    assert got == Usage(
        input_tokens=212,
        output_tokens=64,
        cache_read_tokens=208,
        billed_input_tokens=12,
        billed_output_tokens=64,
    )


def test_cohere_v1_chat_meta() -> None:
    cohere = pytest.importorskip("cohere")
    response = cohere.NonStreamedChatResponse(
        text="hi",
        meta=cohere.ApiMeta(
            billed_units=cohere.ApiMetaBilledUnits(input_tokens=227, output_tokens=225),
            tokens=cohere.ApiMetaTokens(input_tokens=723, output_tokens=227),
            cached_tokens=448,
        ),
    )
    got = same_usage(usage.from_cohere, response, response.meta, response.model_dump())
    # tokens: 723 in (448 cached), 227 out; billed 227 in, 225 out
    assert got == Usage(
        input_tokens=723,
        output_tokens=227,
        cache_read_tokens=448,
        billed_input_tokens=227,
        billed_output_tokens=225,
    )


def test_cohere_embed_only_billed_units() -> None:
    cohere = pytest.importorskip("cohere")
    response = cohere.EmbedByTypeResponse(
        id="1",
        embeddings=cohere.EmbedByTypeResponseEmbeddings(float_=[[0.1]]),
        meta=cohere.ApiMeta(billed_units=cohere.ApiMetaBilledUnits(input_tokens=208)),
    )
    got = same_usage(usage.from_cohere, response, response.model_dump())
    # embed responses carry only billed_units: 208 input tokens, no output
    assert got == Usage(input_tokens=208, billed_input_tokens=208, billed_output_tokens=0)


# =====================================================================================================
# Ollama (ollama/_types.py, BaseGenerateResponse): prompt_eval_count (input) and eval_count (output,
# thinking included: Ollama counts every generated token).
# =====================================================================================================


def test_ollama_chat_and_generate() -> None:
    ollama = pytest.importorskip("ollama")
    chat = ollama.ChatResponse(
        model="qwen3",
        done=True,
        message=ollama.Message(role="assistant", content="Blue.", thinking="Rayleigh scattering..."),
        prompt_eval_count=21,
        eval_count=369,
    )
    got = same_usage(usage.from_ollama, chat, chat.model_dump(), json.loads(chat.model_dump_json()))
    assert got == Usage(input_tokens=21, output_tokens=369)

    generate = ollama.GenerateResponse(
        model="llama3", done=True, response="x", prompt_eval_count=17, eval_count=63
    )
    got = same_usage(usage.from_ollama, generate, generate.model_dump())
    assert got == Usage(input_tokens=17, output_tokens=63)


def test_ollama_prompt_from_kv_cache() -> None:
    ollama = pytest.importorskip("ollama")
    # Ollama omits prompt_eval_count when the whole prompt came from its KV cache
    chunk = ollama.ChatResponse(
        model="llama3", done=True, message=ollama.Message(role="assistant"), eval_count=5
    )
    got = same_usage(usage.from_ollama, chunk, chunk.model_dump())
    assert got == Usage(output_tokens=5)
    assert not got.clamped
