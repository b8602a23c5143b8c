"""LiteLLM instrumentor: one span with tokens and cost per ``completion`` / ``acompletion`` /
``embedding`` / ``aembedding`` call of ``litellm``, streams (``CustomStreamWrapper``) included.

Hook points. The four functions are wrapped where callers look them up: on the ``litellm`` package
(``litellm.completion(...)``, the Router) and in ``litellm.main`` (``completion_with_retries``, ...).
``acompletion`` runs ``completion(..., acompletion=True)`` and ``aembedding`` runs
``embedding(..., aembedding=True)`` internally: those inner calls pass straight through, the async
wrapper traces them. A name bound with ``from litellm import completion`` *before* ``instrument()`` keeps
the unwrapped function: instrument first (``opentelemetry-instrument`` does).

No import, no network. llmtally never imports litellm: ``instrument()`` registers a post-import hook
that wraps litellm when the app imports it (litellm fetches its model cost map over the network at
import unless ``LITELLM_LOCAL_MODEL_COST_MAP=True``; that is the app's import and the app's choice).

Provider and model. From litellm's own routing, without calling ``get_llm_provider`` (it reads API keys
from secret managers and prints to stdout for unknown models): an explicit ``custom_llm_provider``, else
a ``<provider>/`` prefix litellm knows (``litellm.provider_list``), else the model's entry in litellm's
cost map; an explicit ``api_base`` of a known host wins (``openai/x`` sent to api.groq.com is Groq). The
request model is the name without litellm's ``<provider>/`` prefix (what the provider is asked for and
priced by). ``server.address`` comes from ``api_base``, or after the call from the response's
``_hidden_params["api_base"]`` (where litellm actually sent it).

Usage: :func:`llmtally.usage.from_litellm` (litellm normalises every provider to OpenAI's inclusive
shape; for Anthropic it adds cache reads and writes into ``prompt_tokens``). litellm answers an absent
usage with zeros: an all-zero usage is treated as missing and estimated. Streams: litellm strips usage
from the chunks it hands out (unless ``stream_options.include_usage``), but keeps every chunk in the
wrapper's ``chunks`` list: the provider's usage is read there (:func:`stream_usage`). Flagged estimated:
a usage litellm made up itself (the ``include_usage`` chunk of a provider that reported none: litellm
counts tokens), and the output of a stream abandoned before its finish reason (Anthropic's
``message_start`` reports ``output_tokens: 1``): input as reported, output estimated from the text.
litellm's own limits carry over: for Anthropic it counts the reasoning part of the output with its own
tokenizer (the output total is the provider's), and it drops Gemini's ``toolUsePromptTokenCount``.

Counted once. litellm calls the openai SDK for OpenAI-compatible providers: with the OpenAI instrumentor
active its span nests under this one, which is then *delegated* and carries no usage (see
:mod:`.call`). The lazy HTTP request of some litellm streams (``make_call`` on first iteration) is made
with this call active too, so inner instrumentations (the httpx fallback) see it. Cache hits
(``_hidden_params["cache_hit"]``, cached streams) cost nothing: exact zero usage. ``mock_response`` calls
are not LLM calls and are not traced.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Container, Mapping
from functools import partial
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.estimate import estimate_prompt_tokens, heuristic_tokens, tokens_from_chars
from llmtally.instrumentation import openai as openai_instr
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation.call import Call, Settings, capture_content_enabled
from llmtally.instrumentation.hosts import provider_for_host, server_of
from llmtally.instrumentation.streams import TracedAsyncStream, TracedStream
from llmtally.usage import Usage, _fields, from_litellm

CHAT, EMBEDDINGS = sc.Operation.CHAT, sc.Operation.EMBEDDINGS
Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class _Settings(Settings):
    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.litellm: Any = None
        self.stream_type: type | None = None


_settings = _Settings()


class LiteLLMInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Instruments ``litellm`` (tested with 1.83.0). Options of ``instrument()``: ``tracer_provider``,
    ``price_book``. Never imports litellm itself: it is wrapped when the app imports it."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("litellm >= 1.80",)

    def _instrument(self, **kwargs: Any) -> None:
        _settings.configure(__name__, kwargs)
        _settings.active = True
        # Runs now if litellm is already imported, else right after the app imports it.
        wrapt.register_post_import_hook(_on_import, "litellm")

    def _uninstrument(self, **kwargs: Any) -> None:
        _settings.active = False
        _settings.unwrap_all()


def _on_import(module: Any) -> None:
    if not _settings.active or _settings.wrapped:
        return  # uninstrumented before litellm was imported, or already wrapped
    try:
        import litellm.main as main
        from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

        _settings.litellm = module
        _settings.stream_type = CustomStreamWrapper
    except Exception as exc:  # a litellm layout we do not know: leave it alone
        report_internal_error("litellm.instrument", exc)
        return
    for target in (module, main):
        for name, operation, is_async in (("completion", CHAT, False), ("acompletion", CHAT, True),
                                          ("embedding", EMBEDDINGS, False), ("aembedding", EMBEDDINGS, True)):
            wrapper = _async_wrapper(operation) if is_async else _sync_wrapper(operation)
            _settings.wrap(target, name, wrapper, "litellm.instrument")


def _sync_wrapper(operation: str) -> Wrapper:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if kwargs.get("acompletion") is True or kwargs.get("aembedding") is True:
            return wrapped(*args, **kwargs)  # acompletion/aembedding's inner call: traced by the async wrapper
        call = _start(operation, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return _result(call, operation, call.invoke(wrapped, *args, **kwargs))

    return wrapper


def _async_wrapper(operation: str) -> Wrapper:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        call = _start(operation, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        return _result(call, operation, await call.ainvoke(wrapped, *args, **kwargs))

    return wrapper


# --- routing: provider, model, server ---------------------------------------------------------------

# litellm's provider names (litellm.types.utils.LlmProviders) -> gen_ai.provider.name.
_PROVIDERS: Mapping[str, str] = {
    "openai": sc.Provider.OPENAI, "text-completion-openai": sc.Provider.OPENAI,
    "azure": sc.Provider.AZURE_OPENAI, "azure_text": sc.Provider.AZURE_OPENAI,
    "azure_ai": sc.Provider.AZURE_INFERENCE,
    "anthropic": sc.Provider.ANTHROPIC, "anthropic_text": sc.Provider.ANTHROPIC,
    "bedrock": sc.Provider.AWS_BEDROCK, "bedrock_converse": sc.Provider.AWS_BEDROCK,
    "vertex_ai": sc.Provider.GCP_VERTEX_AI, "vertex_ai_beta": sc.Provider.GCP_VERTEX_AI,
    "gemini": sc.Provider.GCP_GEMINI,
    "mistral": sc.Provider.MISTRAL_AI, "codestral": sc.Provider.MISTRAL_AI,
    "text-completion-codestral": sc.Provider.MISTRAL_AI,
    "cohere": sc.Provider.COHERE, "cohere_chat": sc.Provider.COHERE,
    "ollama": sc.Provider.OLLAMA, "ollama_chat": sc.Provider.OLLAMA,
    "groq": sc.Provider.GROQ, "deepseek": sc.Provider.DEEPSEEK, "xai": sc.Provider.X_AI,
    "perplexity": sc.Provider.PERPLEXITY, "watsonx": sc.Provider.IBM_WATSONX_AI,
    "watsonx_text": sc.Provider.IBM_WATSONX_AI, "openrouter": sc.Provider.OPENROUTER,
    "together_ai": sc.Provider.TOGETHER, "fireworks_ai": sc.Provider.FIREWORKS,
}
# Route hints litellm keeps in a Bedrock model name (bedrock/converse/<model>): not part of the model.
_BEDROCK_ROUTES = ("converse/", "invoke/", "converse_like/")


def route(model: str | None, custom_llm_provider: Any, known_providers: Container[Any],
          model_cost: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(litellm provider, model name without litellm's ``<provider>/`` prefix), as litellm routes it:
    an explicit provider, else a known ``<provider>/`` prefix, else the model's cost-map entry. Pure."""
    if not model:
        return (custom_llm_provider if isinstance(custom_llm_provider, str) else None), model
    if isinstance(custom_llm_provider, str) and custom_llm_provider:
        prefix = custom_llm_provider + "/"
        return custom_llm_provider, model[len(prefix):] if model.startswith(prefix) else model
    head, sep, rest = model.partition("/")
    if sep and rest and head in known_providers:
        return head, rest
    entry = model_cost.get(model)
    provider = entry.get("litellm_provider") if isinstance(entry, Mapping) else None
    return (provider if isinstance(provider, str) else None), model


def provider_name(litellm_provider: str | None, host: str | None) -> str:
    """``gen_ai.provider.name``: a known API host wins (``openai/x`` sent to api.groq.com is Groq), else
    litellm's provider mapped to semconv (unknown ones lower-case as litellm spells them). Pure."""
    if litellm_provider is None:
        base = sc.Provider.LITELLM
    elif litellm_provider.startswith("vertex_ai"):  # vertex_ai, vertex_ai_beta, vertex_ai-*-models
        base = sc.Provider.GCP_VERTEX_AI
    else:
        base = _PROVIDERS.get(litellm_provider, litellm_provider.lower())
    return provider_for_host(host, default=base)


def request_model(litellm_provider: str | None, model: str | None) -> str | None:
    if model and litellm_provider in ("bedrock", "bedrock_converse"):
        for hint in _BEDROCK_ROUTES:
            if model.startswith(hint):
                return model[len(hint):]
    return model


def _set_server(call: Call, hidden: Any) -> None:
    """Where litellm actually sent the call (``_hidden_params["api_base"]``), when not given up front."""
    if call.server_address is None and isinstance(hidden, Mapping):
        host, port = server_of(hidden.get("api_base"))
        if host:
            call.server_address, call.server_port = host, port
            call.response_attributes[sc.SERVER_ADDRESS] = host
            if port:
                call.response_attributes[sc.SERVER_PORT] = port


# --- starting a call ------------------------------------------------------------------------------

def _start(operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    # `from litellm import completion` keeps a wrapper after uninstrument(): it must go quiet too.
    if not _settings.active or not is_instrumentation_enabled():
        return None
    try:
        if kwargs.get("mock_response") is not None or kwargs.get("mock_tool_calls") is not None:
            return None  # litellm answers these itself: not an LLM call
        module = _settings.litellm
        model = args[0] if args else kwargs.get("model")
        model = model if isinstance(model, str) else None
        host, port = server_of(kwargs.get("api_base") or kwargs.get("base_url"))
        litellm_provider, bare = route(model, kwargs.get("custom_llm_provider"),
                                       getattr(module, "provider_list", ()), getattr(module, "model_cost", {}))
        bare = request_model(litellm_provider, bare)
        payload = args[1] if len(args) > 1 else kwargs.get("messages" if operation == CHAT else "input")
        capture = capture_content_enabled()
        provider = provider_name(litellm_provider, host)
        attrs = _request_attributes(operation, provider, kwargs, payload, capture)
        estimate = partial(_estimate_chat, payload, bare) if operation == CHAT else partial(_estimate_input, payload)
        call = Call(_settings.tracer, provider=provider, operation=operation,
                    request_model=bare, server_address=host, server_port=port,
                    streaming=operation == CHAT and kwargs.get("stream") is True, attributes=attrs,
                    price_book=_settings.price_book, estimate_input=estimate, capture=capture)
        tier = kwargs.get("service_tier")
        if isinstance(tier, str):  # "auto"/"default": the engine prices them as standard
            call.service_tier = tier
        return call
    except Exception as exc:
        report_internal_error("litellm.start", exc)
        return None


def _request_attributes(operation: str, provider: str, kwargs: Mapping[str, Any], payload: Any,
                        capture: bool) -> dict[str, AttributeValue]:
    """litellm takes OpenAI's request parameters: read them as the OpenAI instrumentor does."""
    body = {**kwargs, ("messages" if operation == CHAT else "input"): payload}  # positional or not
    attrs = openai_instr._request_attributes(openai_instr.CHAT if operation == CHAT else openai_instr.EMBEDDINGS,
                                             body, None, capture)
    if provider not in (sc.Provider.OPENAI, sc.Provider.AZURE_OPENAI):
        attrs.pop(sc.OPENAI_REQUEST_SERVICE_TIER, None)  # an openai.* attribute: not on other providers' spans
    return attrs


def _estimate_chat(messages: Any, model: str | None) -> int:
    return estimate_prompt_tokens(messages=messages, model=model)


def _estimate_input(source: Any) -> int:
    """Embedding input: a string, strings, or token ids (counted as they are)."""
    texts = [source] if isinstance(source, str) else source if isinstance(source, list) else []
    return sum(heuristic_tokens(t) if isinstance(t, str) else len(t) if isinstance(t, list) else 1 if isinstance(
        t, int) else 0 for t in texts)


# --- results --------------------------------------------------------------------------------------

def _reported(usage: Any) -> Usage | None:
    """litellm's usage, or None when it is litellm's all-zero stand-in for a response without one."""
    if usage is None:
        return None
    result = from_litellm(usage)
    if result.input_tokens == 0 and result.output_tokens == 0 and result.provider_cost is None:
        return None
    return result


def _result(call: Call, operation: str, result: Any) -> Any:
    """What the caller gets: the response itself (the call finished), or a traced stream."""
    try:
        stream_type = _settings.stream_type
        if stream_type is not None and isinstance(result, stream_type):
            acc = _StreamAccumulator(call, result)
            _set_server(call, getattr(result, "_hidden_params", None))
            return _TracedLiteLLMStream(result, acc, activate_first=True)
        _finish_response(call, operation, result)
    except Exception as exc:
        report_internal_error("litellm.result", exc)
        call.finish(None)
    return result


def _finish_response(call: Call, operation: str, response: Any) -> None:
    f = _fields(response)
    hidden = getattr(response, "_hidden_params", None)
    _set_server(call, hidden)
    call.set_response(f.get("model"), f.get("id") if operation == CHAT else None)
    if isinstance(hidden, Mapping) and hidden.get("cache_hit") is True:
        call.finish(Usage())  # served from litellm's cache: nothing billed
        return
    usage = _reported(f.get("usage"))
    if operation == CHAT:
        reasons = []
        for choice in f.get("choices") or ():
            c = _fields(choice)
            reason = c.get("finish_reason")
            if isinstance(reason, str):
                reasons.append(reason)
            if usage is None or call.capture:
                message = _fields(c.get("message"))
                for text in (message.get("content"), message.get("reasoning_content")):
                    if isinstance(text, str) and text:
                        call.add_output_text(text)
        if reasons:
            call.finish_reasons = reasons
    call.finish(usage)


# --- streams --------------------------------------------------------------------------------------

_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "reasoning_tokens", "input_audio_tokens", "input_image_tokens", "output_audio_tokens",
           "output_image_tokens")


def stream_usage(chunks: Any) -> tuple[Usage | None, bool]:
    """(the provider's usage over a stream, whether a finish reason arrived), from the wrapper's ``chunks``,
    which keep the usage litellm strips from the chunks it hands out. Streams report cumulative counts,
    sometimes split: Anthropic's ``message_delta`` may carry only ``output_tokens`` (litellm turns the
    rest into zeros) and the 5m/1h cache split is only in ``message_start``. So, as litellm's own
    stream_chunk_builder does, each count is its last non-zero value. Groq's usage rides in ``x_groq``."""
    if not isinstance(chunks, list):
        return None, False
    merged: dict[str, Any] = {}
    finished = clamped = False
    for chunk in chunks:
        if not finished:
            finished = any(getattr(c, "finish_reason", None) for c in getattr(chunk, "choices", None) or ())
        raw = getattr(chunk, "usage", None)
        if raw is None:
            raw = _fields(getattr(chunk, "x_groq", None)).get("usage")
            if raw is None:
                continue
        usage = from_litellm(raw)
        clamped = clamped or usage.clamped
        for name in _COUNTS:
            value = getattr(usage, name)
            if value:
                merged[name] = value
        if usage.provider_cost is not None:
            merged["provider_cost"] = usage.provider_cost
    if not merged.get("input_tokens") and not merged.get("output_tokens"):
        return None, finished  # nothing, or litellm's zeros
    return Usage.build(**merged, clamped=clamped), finished


class _StreamAccumulator:
    """``ModelResponseStream`` chunks: text counted for estimates, usage read at the end."""

    __slots__ = ("_final_usage", "_first", "_reasons", "call", "stream")

    def __init__(self, call: Call, stream: Any) -> None:
        self.call = call
        self.stream = stream
        self._first = True
        self._final_usage: Any = None
        self._reasons: dict[int, str] = {}

    def on_item(self, chunk: Any) -> bool:
        call = self.call
        if self._first:
            self._first = False
            call.set_response(getattr(chunk, "model", None), getattr(chunk, "id", None))
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._final_usage = usage  # the include_usage chunk litellm builds at the end
        for choice in getattr(chunk, "choices", None) or ():
            delta = getattr(choice, "delta", None)
            if delta is not None:
                for text in (getattr(delta, "content", None), getattr(delta, "reasoning_content", None)):
                    if isinstance(text, str) and text:
                        call.add_output_text(text)
                for tool_call in getattr(delta, "tool_calls", None) or ():
                    arguments = getattr(getattr(tool_call, "function", None), "arguments", None)
                    if isinstance(arguments, str) and arguments:
                        call.add_output_text(arguments)
            reason = getattr(choice, "finish_reason", None)
            if isinstance(reason, str) and reason:
                index = getattr(choice, "index", 0)
                self._reasons[index if isinstance(index, int) else 0] = reason
        return True

    def usage(self) -> Usage | None:
        call = self.call
        if self._reasons:
            call.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        if getattr(self.stream, "custom_llm_provider", None) == "cached_response":
            return Usage()  # replayed from litellm's cache: nothing billed
        reported, finished = stream_usage(getattr(self.stream, "chunks", None))
        if reported is not None:
            # The finish chunk litellm makes when the provider's stream ends (Gemini) is not in `chunks`.
            if finished or self._reasons:
                return reported
            # Abandoned before the end: the input counts are real, the output so far is not final
            # (Anthropic's message_start says output_tokens 1): estimate it from the streamed text.
            return Usage.build(input_tokens=reported.input_tokens, cache_read_tokens=reported.cache_read_tokens,
                               cache_write_tokens=reported.cache_write_tokens,
                               cache_write_1h_tokens=reported.cache_write_1h_tokens,
                               input_audio_tokens=reported.input_audio_tokens,
                               input_image_tokens=reported.input_image_tokens,
                               output_tokens=max(reported.output_tokens,
                                                 tokens_from_chars(call.out_ascii, call.out_non_ascii)),
                               estimated=True)
        made_up = _reported(self._final_usage)
        # No provider usage, yet an include_usage chunk: litellm counted the tokens itself.
        return made_up.as_estimated() if made_up is not None else None


class _TracedLiteLLMStream(TracedStream, TracedAsyncStream):
    """Proxy of a ``CustomStreamWrapper``, which iterates both ways (so does this). Made with
    ``activate_first``: litellm may send the request only on the first pull (``make_call``), and inner
    instrumentations must see it is covered."""

    @property
    def close(self) -> Callable[[], Any]:
        # CustomStreamWrapper has no close() (only aclose()): nor does its proxy, so hasattr() checks agree.
        if not hasattr(self.__wrapped__, "close"):
            raise AttributeError("close")
        return partial(TracedStream.close, self)
