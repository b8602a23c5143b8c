"""AWS Bedrock instrumentor (boto3 / botocore >= 1.34): ``converse``, ``converse_stream``, ``invoke_model`` and
``invoke_model_with_response_stream`` of the ``bedrock-runtime`` client.

Hook point. botocore builds each client class at run time (``ClientCreator._create_client_class``: a new
type per service whose methods call ``self._make_api_call(operation_name, kwargs)``), and every such class
derives from ``botocore.client.BaseClient``. Wrapping ``BaseClient._make_api_call`` once therefore sees
every client, created before or after ``instrument()``. It is on every AWS call of the process, so the
wrapper first checks the operation name (four names) and then the service name, and otherwise steps aside.
One span covers botocore's retries of the call. aiobotocore's ``AioBaseClient`` overrides the method: not
covered.

Provider ``aws.bedrock``; operation ``chat`` (``embeddings`` for embedding models through ``invoke_model``:
Titan and Cohere embed); ``gen_ai.request.model`` is the ``modelId`` exactly as given (plain id,
cross-region inference profile such as ``us.anthropic...``, or an ARN), which the price book resolves
(:mod:`llmtally.pricing.matching`). ``server.address`` / ``server.port`` from the client's endpoint URL.

Usage (:mod:`llmtally.usage`), Bedrock's own metering first:

* ``converse``: the response's ``usage`` (``from_bedrock_converse``: ``inputTokens`` excludes cache reads
  and writes, which are added back); ``converse_stream``: the ``metadata`` event's ``usage``.
* ``invoke_model``: the ``X-Amzn-Bedrock-*-Token-Count`` response headers (``from_bedrock_headers``). The
  body is a ``StreamingBody`` the application reads itself: with the headers present (Bedrock always sends
  them) it is handed back untouched and the span ends at once. Only when they are missing (a proxy dropped
  them), content capture is on, or the request asked for 1-hour cache writes (priced above 5-minute ones;
  the headers carry only the total, the model's ``cache_creation`` the split), the body is wrapped in a
  transparent proxy that sees the bytes the application reads and ends the call when the body is
  exhausted, closed or collected: the headers' counts with the body's 1-hour split, or without headers
  the model's own counts in the body (``from_bedrock_invoke_body``), else an estimate.
* ``invoke_model_with_response_stream``: ``amazon-bedrock-invocationMetrics`` of the last chunk
  (preferred over the model's own counts, which can disagree: recorded Anthropic streams report 130
  output tokens where Bedrock meters 98; only the model's split of cache writes by TTL is taken from
  them), else the model's own counts (Anthropic ``message_start`` + cumulative ``message_delta``,
  Llama/Titan counts, Nova ``metadata``), else an estimate.

Streams (``response["stream"]`` / ``response["body"]``, botocore ``EventStream``) are replaced by the shared
:class:`~llmtally.instrumentation.streams.TracedStream` proxy, which yields the very same events and ends
the call exactly once on exhaustion, an error (``EventStreamError`` for an exception event, a cut
connection), ``close()`` or garbage collection after an early ``break``. Errors raised by the call
(``ClientError`` subclasses such as ``ThrottlingException``) get ``error.type`` and an exact zero usage.

Request attributes are read from the Converse ``inferenceConfig`` and, for ``invoke_model``, from the JSON
body of the known families: Anthropic Messages, Meta Llama, Amazon Titan Text, Amazon Nova (and Titan
embeddings' ``embeddingTypes``). Anthropic bodies name the Anthropic model (``claude-3-5-haiku-20241022``):
that is not recorded as the response model, because pricing prefers the response model and Bedrock's
price depends on the id the caller used (a ``global.`` profile costs less than a regional one).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.estimate import counter_for, estimate_prompt_tokens
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation._request import request_number
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import server_of
from llmtally.instrumentation.streams import TracedStream, UsageAccumulator
from llmtally.usage import (
    Usage,
    from_anthropic,
    from_bedrock_converse,
    from_bedrock_headers,
    from_bedrock_invocation_metrics,
    from_bedrock_invoke_body,
    merge_anthropic_stream_usage,
)

_SERVICE = "bedrock-runtime"
_CONVERSE, _INVOKE = "converse", "invoke"
# botocore operation name -> (API, streaming)
_OPERATIONS: dict[str, tuple[str, bool]] = {
    "Converse": (_CONVERSE, False),
    "ConverseStream": (_CONVERSE, True),
    "InvokeModel": (_INVOKE, False),
    "InvokeModelWithResponseStream": (_INVOKE, True),
}
# A body larger than this is not kept for parsing (an image model's base64 output): estimated instead.
_MAX_BODY = 8 * 1024 * 1024


_settings = Settings()


class BedrockInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments boto3's ``bedrock-runtime`` client. Options of ``instrument()``: ``tracer_provider``,
    ``price_book``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("botocore >= 1.34",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        import botocore.client

        _settings.wrap(botocore.client.BaseClient, "_make_api_call", _make_api_call, "bedrock.instrument")

    def _uninstrument(self, **kwargs: Any) -> None:
        _settings.unwrap_all()


def _service_name(instance: Any) -> Any:
    try:
        return instance._service_model.service_name
    except Exception:
        return None


def _make_api_call(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
    operation = args[0] if args else kwargs.get("operation_name")
    spec = _OPERATIONS.get(operation) if isinstance(operation, str) else None
    if spec is None or _service_name(instance) != _SERVICE or not is_instrumentation_enabled():
        return wrapped(*args, **kwargs)
    params = args[1] if len(args) > 1 else kwargs.get("api_params")
    request = _start(instance, spec[0], spec[1], params)
    if request is None:
        return wrapped(*args, **kwargs)
    response = request.call.invoke(wrapped, *args, **kwargs)
    return _on_response(request, response)


# --- model families and request attributes ----------------------------------------------------------------

ANTHROPIC, LLAMA, TITAN_TEXT, TITAN_EMBED, NOVA, COHERE_EMBED = (
    "anthropic", "llama", "titan-text", "titan-embed", "nova", "cohere-embed")
_REGION = re.compile(r"^(?:us|eu|apac|global|jp|au|ca|us-gov)\.")
_FAMILIES = (("anthropic.", ANTHROPIC), ("meta.", LLAMA), ("amazon.titan-text", TITAN_TEXT),
             ("amazon.titan-embed", TITAN_EMBED), ("amazon.nova", NOVA), ("cohere.embed", COHERE_EMBED))


def model_family(model_id: str | None) -> str | None:
    """The invoke_model body format of a model id: plain, a cross-region profile (``us.``, ``global.``)
    or an ARN ending in either. None for others (an application inference profile's opaque id)."""
    if not model_id:
        return None
    name = _REGION.sub("", model_id.rsplit("/", 1)[-1].lower(), count=1)
    for prefix, family in _FAMILIES:
        if name.startswith(prefix):
            return family
    return None


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# Where each family keeps its sampling parameters: (container key or "", field names, attribute).
_PARAMS: dict[str | None, tuple[tuple[str, tuple[str, ...], str], ...]] = {
    _CONVERSE: (("inferenceConfig", ("maxTokens",), sc.GEN_AI_REQUEST_MAX_TOKENS),
                ("inferenceConfig", ("temperature",), sc.GEN_AI_REQUEST_TEMPERATURE),
                ("inferenceConfig", ("topP",), sc.GEN_AI_REQUEST_TOP_P),
                ("inferenceConfig", ("stopSequences",), sc.GEN_AI_REQUEST_STOP_SEQUENCES),
                ("additionalModelRequestFields", ("top_k", "topK"), sc.GEN_AI_REQUEST_TOP_K)),
    ANTHROPIC: (("", ("max_tokens",), sc.GEN_AI_REQUEST_MAX_TOKENS),
                ("", ("temperature",), sc.GEN_AI_REQUEST_TEMPERATURE),
                ("", ("top_p",), sc.GEN_AI_REQUEST_TOP_P), ("", ("top_k",), sc.GEN_AI_REQUEST_TOP_K),
                ("", ("stop_sequences",), sc.GEN_AI_REQUEST_STOP_SEQUENCES)),
    LLAMA: (("", ("max_gen_len",), sc.GEN_AI_REQUEST_MAX_TOKENS),
            ("", ("temperature",), sc.GEN_AI_REQUEST_TEMPERATURE), ("", ("top_p",), sc.GEN_AI_REQUEST_TOP_P)),
    TITAN_TEXT: (("textGenerationConfig", ("maxTokenCount",), sc.GEN_AI_REQUEST_MAX_TOKENS),
                 ("textGenerationConfig", ("temperature",), sc.GEN_AI_REQUEST_TEMPERATURE),
                 ("textGenerationConfig", ("topP",), sc.GEN_AI_REQUEST_TOP_P),
                 ("textGenerationConfig", ("stopSequences",), sc.GEN_AI_REQUEST_STOP_SEQUENCES)),
    NOVA: (("inferenceConfig", ("max_new_tokens", "maxTokens"), sc.GEN_AI_REQUEST_MAX_TOKENS),
           ("inferenceConfig", ("temperature",), sc.GEN_AI_REQUEST_TEMPERATURE),
           ("inferenceConfig", ("topP", "top_p"), sc.GEN_AI_REQUEST_TOP_P),
           ("inferenceConfig", ("topK", "top_k"), sc.GEN_AI_REQUEST_TOP_K),
           ("inferenceConfig", ("stopSequences",), sc.GEN_AI_REQUEST_STOP_SEQUENCES)),
    TITAN_EMBED: (("", ("embeddingTypes",), sc.GEN_AI_REQUEST_ENCODING_FORMATS),),
    COHERE_EMBED: (("", ("embedding_types",), sc.GEN_AI_REQUEST_ENCODING_FORMATS),),
}
_LIST_ATTRS = frozenset({sc.GEN_AI_REQUEST_STOP_SEQUENCES, sc.GEN_AI_REQUEST_ENCODING_FORMATS})


def request_attributes(kind: str | None, source: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """Sampling parameters of a Converse request or an invoke_model body of family ``kind`` (pure)."""
    attrs: dict[str, AttributeValue] = {}
    for container, names, attr in _PARAMS.get(kind, ()):
        holder = _dict(source.get(container)) if container else source
        value = next((holder[n] for n in names if holder.get(n) is not None), None)
        if attr in _LIST_ATTRS:
            strings = _strings(value)
            if strings is not None:
                attrs[attr] = strings
        else:
            number = request_number(attr, value)
            if number is not None:
                attrs[attr] = number
    return attrs


def _parse_body(body: Any) -> Mapping[str, Any] | None:
    """invoke_model's ``body`` parameter as JSON when it is given as bytes or text (a file is left alone)."""
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        try:
            parsed = json.loads(bytes(body) if isinstance(body, memoryview) else body)
        except ValueError:
            return None
        return parsed if isinstance(parsed, Mapping) else None
    return None


def _texts(value: Any) -> list[str]:
    """Every text of a system prompt / content list: strings and ``text`` fields."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _texts(item)]
    text = _dict(value).get("text")
    return [text] if isinstance(text, str) else []


def _prompt(api: str, params: Mapping[str, Any], body: Mapping[str, Any] | None) -> tuple[Any, list[str]]:
    """(chat messages, other prompt texts) of a request, for estimates and content capture."""
    if api == _CONVERSE:
        return params.get("messages"), _texts(params.get("system"))
    if body is None:
        return None, []
    others = _texts(body.get("system"))
    for key in ("prompt", "inputText"):  # Llama, Titan text and embeddings
        value = body.get(key)
        if isinstance(value, str):
            others.append(value)
    others += _texts(body.get("texts"))  # Cohere embed
    return body.get("messages"), others


def _estimate_input(api: str, params: Mapping[str, Any], body: Mapping[str, Any] | None, model: str | None) -> int:
    messages, others = _prompt(api, params, body)
    counter = counter_for(model)
    return estimate_prompt_tokens(messages=messages, model=model) + sum(counter.count(t) for t in others)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"  # an image or document: never inline binary content
    return str(value)


def _captured_prompt(api: str, params: Mapping[str, Any], body: Mapping[str, Any] | None) -> str | None:
    messages, others = _prompt(api, params, body)
    turns: list[Any] = [{"role": "system", "content": text} for text in others]
    if isinstance(messages, (list, tuple)):
        turns += list(messages)
    return json.dumps(turns, default=_jsonable)[:100_000] if turns else None


class _Request:
    """What the wrapper knows about one call between its start and its response."""

    __slots__ = ("api", "body", "call", "stream")

    def __init__(self, call: Call, api: str, stream: bool, body: Mapping[str, Any] | None = None) -> None:
        self.call = call
        self.api = api
        self.stream = stream
        self.body = body  # invoke_model's JSON request body, when it was given as bytes or text


def _start(instance: Any, api: str, stream: bool, params: Any) -> _Request | None:
    try:
        params = _dict(params)
        model = params.get("modelId")
        model = model if isinstance(model, str) else None
        family = model_family(model)
        body = _parse_body(params.get("body")) if api == _INVOKE else None
        embeddings = api == _INVOKE and family in (TITAN_EMBED, COHERE_EMBED)
        attrs = request_attributes(_CONVERSE if api == _CONVERSE else family, params if body is None else body)
        capture = capture_content_enabled()
        if capture:
            prompt = _captured_prompt(api, params, body)
            if prompt is not None:
                attrs[sc.GEN_AI_INPUT_MESSAGES] = prompt
        host, port = server_of(getattr(getattr(instance, "meta", None), "endpoint_url", None))
        call = Call(_settings.tracer, provider=sc.Provider.AWS_BEDROCK,
                    operation=sc.Operation.EMBEDDINGS if embeddings else sc.Operation.CHAT, request_model=model,
                    server_address=host, server_port=port, streaming=stream, attributes=attrs,
                    price_book=_settings.price_book,
                    estimate_input=lambda: _estimate_input(api, params, body, model), capture=capture)
        return _Request(call, api, stream, body)
    except Exception as exc:
        report_internal_error("bedrock.start", exc)
        return None


# --- responses ----------------------------------------------------------------------------------------

def _reason(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def _on_response(request: _Request, response: Any) -> Any:
    call = request.call
    try:
        if not isinstance(response, dict):
            call.finish(None)
        elif request.api == _CONVERSE and not request.stream:
            _finish_converse(call, response)
        elif request.api == _CONVERSE:
            _wrap_stream(response, "stream", _ConverseStreamAccumulator(call))
        elif request.stream:
            _wrap_stream(response, "body", _InvokeStreamAccumulator(call))
        else:
            _finish_invoke(call, response, request.body)
    except Exception as exc:
        report_internal_error("bedrock.response", exc)
        call.finish(None)
    return response


def _wrap_stream(response: dict[str, Any], key: str, accumulator: Any) -> None:
    stream = response.get(key)
    if stream is None:
        accumulator.call.finish(None)
        return
    response[key] = TracedStream(stream, accumulator)


def _converse_usage(holder: Any) -> Usage | None:
    """Usage of a Converse response / ``metadata`` event when it carries counts, else None (estimate)."""
    u = _dict(_dict(holder).get("usage"))
    if u.get("inputTokens") is None and u.get("outputTokens") is None:
        return None
    return from_bedrock_converse(u)


def _converse_texts(content: Any) -> list[str]:
    """Output texts of Converse content blocks: text, tool-use input (as JSON), reasoning text."""
    out: list[str] = []
    for block in content if isinstance(content, (list, tuple)) else ():
        b = _dict(block)
        if isinstance(b.get("text"), str):
            out.append(b["text"])
        elif "toolUse" in b:
            out.append(json.dumps(_dict(b["toolUse"]).get("input"), default=str))
        elif "reasoningContent" in b:
            text = _dict(_dict(b["reasoningContent"]).get("reasoningText")).get("text")
            if isinstance(text, str):
                out.append(text)
    return out


def _finish_converse(call: Call, response: Mapping[str, Any]) -> None:
    usage = _converse_usage(response)
    reason = _reason(response.get("stopReason"))
    if reason:
        call.finish_reasons = [reason]
    if usage is None or call.output_parts is not None:
        content = _dict(_dict(response.get("output")).get("message")).get("content")
        for text in _converse_texts(content):
            call.add_output_text(text)
    call.finish(usage)


def asks_1h_cache(value: Any, depth: int = 0) -> bool:
    """Whether a request body asks for a 1-hour prompt cache anywhere (``"ttl": "1h"`` in a
    ``cache_control`` / ``cachePoint``). Pure."""
    if depth > 32:
        return False
    if isinstance(value, Mapping):
        return value.get("ttl") == "1h" or any(asks_1h_cache(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(asks_1h_cache(v, depth + 1) for v in value)
    return False


def with_ttl_split(metered: Usage, model_usage: Usage | None) -> Usage:
    """Bedrock's metered usage with the model's own split of cache writes into 5-minute and 1-hour ones
    (priced apart): the metering headers and invocation metrics only have the total. Pure."""
    if model_usage is None or not model_usage.cache_write_1h_tokens or not metered.cache_write_tokens:
        return metered
    return replace(metered, cache_write_1h_tokens=min(model_usage.cache_write_1h_tokens,
                                                      metered.cache_write_tokens))


def _finish_invoke(call: Call, response: dict[str, Any], request_body: Mapping[str, Any] | None) -> None:
    headers = _dict(_dict(response.get("ResponseMetadata")).get("HTTPHeaders"))
    usage = from_bedrock_headers(headers)
    body = response.get("body")
    # With 1-hour cache writes the body is read too: only the model's own usage says how many were 1-hour.
    split = usage is not None and usage.cache_write_tokens > 0 and asks_1h_cache(request_body)
    if (usage is not None and call.output_parts is None and not split) or body is None:
        call.finish(usage)  # Bedrock metered the call: the body stays the application's, untouched
        return
    response["body"] = _TracedBody(body, _BodyAccumulator(call, usage))


class _ConverseStreamAccumulator(UsageAccumulator):
    """Converse stream events: delta texts counted; ``messageStop`` has the stop reason, ``metadata`` usage."""

    __slots__ = ()

    def on_item(self, event: Any) -> bool:
        call = self.call
        if not isinstance(event, Mapping):
            return True
        if "contentBlockDelta" in event:
            delta = _dict(_dict(event["contentBlockDelta"]).get("delta"))
            text = delta.get("text")
            if text is None:
                text = _dict(delta.get("toolUse")).get("input")
            if text is None:
                text = _dict(delta.get("reasoningContent")).get("text")
            if isinstance(text, str) and text:
                call.add_output_text(text)
        elif "messageStop" in event:
            reason = _reason(_dict(event["messageStop"]).get("stopReason"))
            if reason:
                call.finish_reasons = [reason]
        elif "metadata" in event:
            self._usage = _converse_usage(event["metadata"])
        return True


class _ModelOutput:
    """The model's own view of an invoke_model answer, read from its JSON body or stream chunks, whatever
    the family: key names tell the formats apart (an application inference profile hides the model)."""

    __slots__ = ("anthropic_delta", "anthropic_start", "call", "native", "native_final", "nova_usage")

    def __init__(self, call: Call) -> None:
        self.call = call
        self.native: dict[str, Any] = {}  # Llama / Titan counts, latest value of each
        self.native_final = False  # their last chunk (with a stop reason) arrived: the counts are final
        self.anthropic_start: Any = None
        self.anthropic_delta: Any = None
        self.nova_usage: Any = None

    def text(self, text: Any) -> None:
        if isinstance(text, str) and text:
            self.call.add_output_text(text)

    def reason(self, value: Any) -> None:
        reason = _reason(value)
        if reason:
            self.call.finish_reasons = [reason]

    def read_chunk(self, body: Mapping[str, Any]) -> None:
        """One chunk of an invoke stream."""
        kind = body.get("type")
        if isinstance(kind, str):  # Anthropic Messages events
            if kind == "content_block_delta":
                delta = _dict(body.get("delta"))
                self.text(delta.get("text") or delta.get("partial_json") or delta.get("thinking"))
            elif kind == "message_start":
                message = _dict(body.get("message"))
                self.call.set_response(response_id=message.get("id"))
                self.anthropic_start = message.get("usage")
            elif kind == "message_delta":
                self.reason(_dict(body.get("delta")).get("stop_reason"))
                if body.get("usage") is not None:
                    self.anthropic_delta = body["usage"]
            return
        if "generation" in body or "outputText" in body:  # Llama, Titan text
            self.text(body.get("generation") if "generation" in body else body.get("outputText"))
            reason = body.get("stop_reason") or body.get("completionReason")
            if reason is not None:
                self.reason(reason)
                self.native_final = True
            for key in ("prompt_token_count", "generation_token_count", "inputTextTokenCount",
                        "totalOutputTextTokenCount"):
                if body.get(key) is not None:
                    self.native[key] = body[key]
            return
        if "contentBlockDelta" in body:  # Nova
            delta = _dict(_dict(body["contentBlockDelta"]).get("delta"))
            self.text(delta.get("text") or _dict(delta.get("toolUse")).get("input"))
        elif "messageStop" in body:
            self.reason(_dict(body["messageStop"]).get("stopReason"))
        elif "metadata" in body:
            self.nova_usage = _dict(body["metadata"]).get("usage")

    def stream_usage(self) -> Usage | None:
        """The model's own final counts, or None (estimate) when the stream ended before they were final:
        ``message_start``'s output count and Llama's/Titan's running counts are partial."""
        if self.anthropic_delta is not None:
            return from_anthropic(merge_anthropic_stream_usage(self.anthropic_start, self.anthropic_delta))
        if self.nova_usage is not None:
            return from_bedrock_converse(self.nova_usage)
        if not self.native_final:
            return None
        n = self.native
        if "prompt_token_count" in n or "generation_token_count" in n:
            return from_bedrock_invoke_body(n)
        if "inputTextTokenCount" in n or "totalOutputTextTokenCount" in n:
            return from_bedrock_invoke_body({"inputTextTokenCount": n.get("inputTextTokenCount"),
                                             "results": [{"tokenCount": n.get("totalOutputTextTokenCount")}]})
        return None

    def read_body(self, body: Mapping[str, Any]) -> None:
        """A whole invoke_model answer."""
        content = body.get("content")
        if isinstance(content, list):  # Anthropic
            self.call.set_response(response_id=body.get("id"))
            self.reason(body.get("stop_reason"))
            for block in content:
                b = _dict(block)
                if isinstance(b.get("text"), str):
                    self.text(b["text"])
                elif b.get("type") == "tool_use":
                    self.text(json.dumps(b.get("input"), default=str))
                elif isinstance(b.get("thinking"), str):
                    self.text(b["thinking"])
        elif "generation" in body:  # Llama
            self.text(body.get("generation"))
            self.reason(body.get("stop_reason"))
        elif isinstance(body.get("results"), list):  # Titan text
            for result in body["results"]:
                r = _dict(result)
                self.text(r.get("outputText"))
                self.reason(r.get("completionReason"))
        elif "output" in body:  # Nova
            self.reason(body.get("stopReason"))
            for text in _converse_texts(_dict(_dict(body.get("output")).get("message")).get("content")):
                self.text(text)


class _InvokeStreamAccumulator:
    """invoke_model_with_response_stream ``chunk`` events: each chunk's JSON is read (the event is not
    changed); the last one carries Bedrock's ``amazon-bedrock-invocationMetrics``."""

    __slots__ = ("_metrics", "_output", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._output = _ModelOutput(call)
        self._metrics: Usage | None = None

    def on_item(self, event: Any) -> bool:
        data = _dict(_dict(event).get("chunk")).get("bytes")
        if not isinstance(data, (bytes, bytearray, str)):
            return True
        try:
            body = json.loads(data)
        except ValueError:
            return True
        if isinstance(body, Mapping):
            metrics = body.get("amazon-bedrock-invocationMetrics")
            if metrics is not None:
                self._metrics = from_bedrock_invocation_metrics(metrics)
            self._output.read_chunk(body)
        return True

    def usage(self) -> Usage | None:
        if self._metrics is None:
            return self._output.stream_usage()
        return with_ttl_split(self._metrics, self._output.stream_usage())


class _BodyAccumulator:
    """A non-stream invoke_model body read through :class:`_TracedBody`."""

    __slots__ = ("call", "metered")

    def __init__(self, call: Call, metered: Usage | None) -> None:
        self.call = call
        self.metered = metered

    def finish(self, data: bytes | None, error: BaseException | None) -> None:
        usage = self.metered
        try:
            body = json.loads(data) if data else None
            if isinstance(body, Mapping):
                _ModelOutput(self.call).read_body(body)
                own = from_bedrock_invoke_body(body)
                usage = own if usage is None else with_ttl_split(usage, own)
        except ValueError:
            pass  # not JSON (or only part of it was read): the output is estimated as zero
        except Exception as exc:
            report_internal_error("bedrock.body", exc)
        self.call.finish(usage, error)


class _TracedBody(wrapt.ObjectProxy[Any]):
    """Transparent proxy of invoke_model's ``StreamingBody``: every byte the application reads (``read``,
    ``readinto``, ``readlines``, iteration, ``iter_chunks``, ``iter_lines``) passes through it, and the
    call ends once, when the body is exhausted, closed, left (``with``) or garbage-collected. The helper
    methods are botocore's own, run on the proxy, so that their reads go through it.
    ``with body as raw`` hands out botocore's raw urllib3 stream, whose reads are not seen: the call
    ends when the block is left, with what was seen."""

    def __init__(self, wrapped: Any, accumulator: _BodyAccumulator) -> None:
        super().__init__(wrapped)
        self._self_acc = accumulator
        self._self_parts: list[bytes] | None = []
        self._self_size = 0
        self._self_done = False

    def _self_seen(self, data: Any) -> None:
        parts = self._self_parts
        if parts is None or not data:
            return
        self._self_size += len(data)
        if self._self_size > _MAX_BODY:
            self._self_parts = None  # too big to keep: the output will be estimated
        else:
            parts.append(bytes(data))

    def _self_end(self, error: BaseException | None) -> None:
        if self._self_done:
            return
        self._self_done = True
        parts = self._self_parts
        self._self_parts = None
        try:
            self._self_acc.finish(b"".join(parts) if parts else None, error)
        except Exception as exc:
            report_internal_error("bedrock.body", exc)
            self._self_acc.call.finish(None, error)

    def read(self, amt: int | None = None) -> Any:
        try:
            chunk = self.__wrapped__.read(amt)
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_seen(chunk)
        if amt is None or amt < 0 or (not chunk and amt > 0):
            self._self_end(None)
        return chunk

    def readinto(self, b: Any) -> Any:
        try:
            n = self.__wrapped__.readinto(b)
        except BaseException as exc:
            self._self_end(exc)
            raise
        if n:
            self._self_seen(memoryview(b)[:n])
        elif len(b) > 0:
            self._self_end(None)
        return n

    def readlines(self) -> Any:
        try:
            lines = self.__wrapped__.readlines()
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_seen(b"".join(lines))
        self._self_end(None)
        return lines

    # botocore's own helpers, run with this proxy as ``self``: they read through read() above, so their
    # bytes are seen, and they stay exactly botocore's (whatever its version does).
    def iter_chunks(self, *args: Any, **kwargs: Any) -> Any:
        return type(self.__wrapped__).iter_chunks(self, *args, **kwargs)

    def iter_lines(self, *args: Any, **kwargs: Any) -> Any:
        return type(self.__wrapped__).iter_lines(self, *args, **kwargs)

    def __iter__(self) -> Any:
        return type(self.__wrapped__).__iter__(self)

    def __next__(self) -> Any:
        return type(self.__wrapped__).__next__(self)

    next = __next__

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end(None)

    def __enter__(self) -> Any:
        return self.__wrapped__.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_end(None)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self._self_end(None)
