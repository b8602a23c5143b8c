"""The Usage record and per-provider normalisation to semconv token semantics.

Semantics (OpenTelemetry GenAI, DESIGN.md): ``input_tokens`` includes cache reads and cache writes,
``output_tokens`` includes reasoning. From those, five disjoint *leaves* (uncached input, cache read,
cache write, visible output, reasoning) always sum to ``input_tokens + output_tokens``: prices and the
per-kind token counter work on leaves so nothing is counted twice.

Normalisers accept the SDK's response/usage objects or their plain ``dict`` (wire JSON) forms and
never raise. An absent count (``None``) reads as 0; whole numbers given as floats or numeric strings
are accepted as they are. Anything that had to be *corrected* — a negative, a fraction, a non-numeric
string or object, a sub-count above its total — is clamped and the record flagged ``clamped``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from llmtally import semconv


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one call in semconv-inclusive form.

    Construct through :meth:`build` from untrusted numbers; the plain constructor trusts its input.
    """

    input_tokens: int = 0
    """All input tokens, cache reads and cache writes included."""
    output_tokens: int = 0
    """All output tokens, reasoning included."""
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    """All cache-write tokens; of which ``cache_write_1h_tokens`` had a 1-hour TTL (the rest 5 minutes)."""
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_audio_tokens: int = 0
    output_image_tokens: int = 0
    images_generated: int = 0
    billed_input_tokens: int | None = None
    """Set when the provider bills a count other than the tokens it reports (Cohere ``billed_units``)."""
    billed_output_tokens: int | None = None
    provider_cost: Decimal | None = None
    """A price the response itself carried (OpenRouter ``usage.cost``), in USD."""
    estimated: bool = False
    """Counts are an estimate (the provider returned no usage)."""
    clamped: bool = False
    """The payload was inconsistent or malformed and was corrected."""

    @classmethod
    def build(
        cls,
        *,
        input_tokens: object = 0,
        output_tokens: object = 0,
        cache_read_tokens: object = 0,
        cache_write_tokens: object = 0,
        cache_write_1h_tokens: object = 0,
        reasoning_tokens: object = 0,
        input_audio_tokens: object = 0,
        input_image_tokens: object = 0,
        output_audio_tokens: object = 0,
        output_image_tokens: object = 0,
        images_generated: object = 0,
        billed_input_tokens: object = None,
        billed_output_tokens: object = None,
        provider_cost: object = None,
        estimated: bool = False,
        clamped: bool = False,
    ) -> Usage:
        """Coerce and clamp untrusted counts into a consistent record; never raises."""
        # Fast path (every call of a well-formed payload): plain non-negative ints or None, every
        # sub-count within its total, nothing billed apart. Straight-line checks, then the constructor.
        inp = 0 if input_tokens is None else input_tokens
        out = 0 if output_tokens is None else output_tokens
        cr = 0 if cache_read_tokens is None else cache_read_tokens
        cw = 0 if cache_write_tokens is None else cache_write_tokens
        cw1h = 0 if cache_write_1h_tokens is None else cache_write_1h_tokens
        rs = 0 if reasoning_tokens is None else reasoning_tokens
        ia = 0 if input_audio_tokens is None else input_audio_tokens
        ii = 0 if input_image_tokens is None else input_image_tokens
        oa = 0 if output_audio_tokens is None else output_audio_tokens
        oi = 0 if output_image_tokens is None else output_image_tokens
        img = 0 if images_generated is None else images_generated
        if (type(inp) is int and type(out) is int and type(cr) is int and type(cw) is int and type(cw1h) is int
                and type(rs) is int and type(ia) is int and type(ii) is int and type(oa) is int
                and type(oi) is int and type(img) is int
                and billed_input_tokens is None and billed_output_tokens is None and provider_cost is None
                and 0 <= cr <= inp and 0 <= cw <= inp - cr and 0 <= cw1h <= cw and 0 <= rs <= out
                and 0 <= ia <= inp and 0 <= ii <= inp and 0 <= oa <= out and 0 <= oi <= out and img >= 0):
            return cls(inp, out, cr, cw, cw1h, rs, ia, ii, oa, oi, img, None, None, None,
                       bool(estimated), bool(clamped))
        return cls._coerced(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                            cache_write_1h_tokens, reasoning_tokens, input_audio_tokens, input_image_tokens,
                            output_audio_tokens, output_image_tokens, images_generated, billed_input_tokens,
                            billed_output_tokens, provider_cost, estimated, clamped)

    @classmethod
    def _coerced(cls, input_tokens: object, output_tokens: object, cache_read_tokens: object,
                 cache_write_tokens: object, cache_write_1h_tokens: object, reasoning_tokens: object,
                 input_audio_tokens: object, input_image_tokens: object, output_audio_tokens: object,
                 output_image_tokens: object, images_generated: object, billed_input_tokens: object,
                 billed_output_tokens: object, provider_cost: object, estimated: bool, clamped: bool) -> Usage:
        """The general path of :meth:`build`: every value coerced, every sub-count clamped."""
        c = _Coercer()
        inp = c.count(input_tokens)
        out = c.count(output_tokens)
        cr = c.count(cache_read_tokens)
        cw = c.count(cache_write_tokens)
        cw1h = c.count(cache_write_1h_tokens)
        rs = c.count(reasoning_tokens)
        # Sub-counts never exceed their totals: the total is what the provider bills, so clamp the part.
        cw1h = c.at_most(cw1h, cw)
        cr = c.at_most(cr, inp)
        cw = c.at_most(cw, inp - cr)
        cw1h = min(cw1h, cw)
        rs = c.at_most(rs, out)
        return cls(
            input_tokens=inp,
            output_tokens=out,
            cache_read_tokens=cr,
            cache_write_tokens=cw,
            cache_write_1h_tokens=cw1h,
            reasoning_tokens=rs,
            input_audio_tokens=c.at_most(c.count(input_audio_tokens), inp),
            input_image_tokens=c.at_most(c.count(input_image_tokens), inp),
            output_audio_tokens=c.at_most(c.count(output_audio_tokens), out),
            output_image_tokens=c.at_most(c.count(output_image_tokens), out),
            images_generated=c.count(images_generated),
            billed_input_tokens=c.optional_count(billed_input_tokens),
            billed_output_tokens=c.optional_count(billed_output_tokens),
            provider_cost=c.money(provider_cost),
            estimated=bool(estimated),
            clamped=clamped or c.clamped,
        )

    # --- derived leaves: disjoint, sum to input + output ----------------------------------------
    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cache_read_tokens - self.cache_write_tokens

    @property
    def cache_write_5m_tokens(self) -> int:
        return self.cache_write_tokens - self.cache_write_1h_tokens

    @property
    def visible_output_tokens(self) -> int:
        return self.output_tokens - self.reasoning_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def leaves(self) -> dict[str, int]:
        """The five disjoint token counts keyed by :data:`semconv.TOKEN_LEAVES`."""
        return {
            semconv.TokenLeaf.UNCACHED_INPUT: self.uncached_input_tokens,
            semconv.TokenLeaf.CACHE_READ: self.cache_read_tokens,
            semconv.TokenLeaf.CACHE_WRITE: self.cache_write_tokens,
            semconv.TokenLeaf.OUTPUT: self.visible_output_tokens,
            semconv.TokenLeaf.REASONING: self.reasoning_tokens,
        }

    def __add__(self, other: Usage) -> Usage:
        """Sum of two calls' usage (e.g. per-turn totals); flags are sticky."""
        if not isinstance(other, Usage):
            return NotImplemented

        def opt(a: Any, b: Any) -> Any:
            # Not `(a or 0) + (b or 0)`: a zero Decimal cost is falsy and would turn into int 0.
            return b if a is None else a if b is None else a + b

        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            input_audio_tokens=self.input_audio_tokens + other.input_audio_tokens,
            input_image_tokens=self.input_image_tokens + other.input_image_tokens,
            output_audio_tokens=self.output_audio_tokens + other.output_audio_tokens,
            output_image_tokens=self.output_image_tokens + other.output_image_tokens,
            images_generated=self.images_generated + other.images_generated,
            billed_input_tokens=opt(self.billed_input_tokens, other.billed_input_tokens),
            billed_output_tokens=opt(self.billed_output_tokens, other.billed_output_tokens),
            provider_cost=opt(self.provider_cost, other.provider_cost),
            estimated=self.estimated or other.estimated,
            clamped=self.clamped or other.clamped,
        )

    def as_estimated(self) -> Usage:
        return replace(self, estimated=True)


EMPTY_USAGE = Usage()


class _Coercer:
    """Turns whatever a payload holds into a non-negative int, remembering if it had to correct it."""

    __slots__ = ("clamped",)

    def __init__(self) -> None:
        self.clamped = False

    def count(self, value: object) -> int:
        if value is None:
            return 0
        if type(value) is int:
            if value >= 0:
                return value
            self.clamped = True
            return 0
        if isinstance(value, bool):  # a bool is an int subclass, never a count
            self.clamped = True
            return 0
        try:
            if isinstance(value, float):
                number = value
            elif isinstance(value, (int, str, Decimal)):
                number = float(value)
            else:
                self.clamped = True
                return 0
        except (TypeError, ValueError, ArithmeticError):  # ArithmeticError: int subclass too large
            self.clamped = True
            return 0
        if not math.isfinite(number) or number < 0:
            self.clamped = True
            return 0
        if not number.is_integer():
            # Numeric strings are how some gateways send counts, and integral floats how SDKs type them
            # (cohere/types/usage_tokens.py, api_meta_tokens.py: `input_tokens: Optional[float]`);
            # fractional counts are malformed.
            self.clamped = True
        return int(number)

    def optional_count(self, value: object) -> int | None:
        return None if value is None else self.count(value)

    def at_most(self, value: int, limit: int) -> int:
        if value > limit:
            self.clamped = True
            return max(limit, 0)
        return value

    def money(self, value: object) -> Decimal | None:
        if value is None or isinstance(value, bool):
            return None
        try:
            # str() first: Decimal(float) would carry the binary expansion of e.g. 0.1.
            amount = Decimal(str(value)) if isinstance(value, (int, float, str, Decimal)) else None
        except (InvalidOperation, ValueError):  # ValueError: str() of an int above 4300 digits
            amount = None
        if amount is None or not amount.is_finite() or amount < 0:
            self.clamped = True
            return None
        return amount


# --- payload access --------------------------------------------------------------------------------

def _get(obj: Any, *names: str) -> Any:
    """First present field among ``names`` of a mapping or an object (SDK pydantic models); else None.

    Several names cover the SDKs' snake_case attributes and the wire's camelCase keys in one call.
    """
    if obj is None:
        return None
    cls = type(obj)
    pydantic = cls is not dict and getattr(cls, "__pydantic_fields__", None) is not None
    if cls is dict or (not pydantic and isinstance(obj, Mapping)):
        for name in names:
            value = obj.get(name)
            if value is not None:
                return value
        return None
    if pydantic:
        # pydantic v2 keeps fields in __dict__ and unknown wire fields (OpenRouter's `cost`) in
        # __pydantic_extra__; getattr() on an absent optional field raises inside pydantic (~3 µs).
        fields = obj.__dict__
        for name in names:
            value = fields.get(name)
            if value is not None:
                return value
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra:
            for name in names:
                value = extra.get(name)
                if value is not None:
                    return value
        return None
    for name in names:
        value = getattr(obj, name, None)
        if value is None:
            extra = getattr(obj, "model_extra", None)
            if isinstance(extra, Mapping):
                value = extra.get(name)
        if value is not None:
            return value
    return None


class _AttrView(Mapping[str, Any]):
    """Read-only mapping over an object's attributes (SDK objects that are neither dicts nor pydantic)."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        # _get's object branch, without its dict/pydantic/Mapping tests: _fields already ruled those out.
        obj = self._obj
        value = getattr(obj, name, None)
        if value is None:
            extra = getattr(obj, "model_extra", None)
            if extra is not None and isinstance(extra, Mapping):
                value = extra.get(name)
        return default if value is None else value

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_FIELDS: Mapping[str, Any] = {}


def _fields(obj: Any) -> Mapping[str, Any]:
    """A mapping view of a payload, taken once so each field read is a dict lookup (hot path)."""
    if obj is None:
        return _NO_FIELDS
    cls = type(obj)
    if cls is dict:  # before the Mapping check: an ABC isinstance miss costs ~1 us on the per-call path
        return obj  # type: ignore[no-any-return]
    if getattr(cls, "__pydantic_fields__", None) is not None:
        extra = getattr(obj, "__pydantic_extra__", None)
        return {**obj.__dict__, **extra} if extra else obj.__dict__
    if isinstance(obj, Mapping):
        return obj
    return _AttrView(obj)


def _usage_fields(response_or_usage: Any) -> Mapping[str, Any]:
    """The field view of a response's ``usage``, or of the argument itself when it is the usage."""
    # A dict (the field view instrumentors pass) needs no _fields call: the helper adds no call to the hot path.
    top = response_or_usage if type(response_or_usage) is dict else _fields(response_or_usage)
    inner = top.get("usage")
    return top if inner is None else _fields(inner)


def _usage_of(response: Any, *names: str) -> Any:
    """The usage object of a response, or the argument itself when it already is one."""
    found = _get(response, *names)
    return response if found is None else found


# --- OpenAI and OpenAI-compatible ------------------------------------------------------------------
# Read in openai/types/completion_usage.py and openai/types/responses/response_usage.py: prompt_tokens
# and input_tokens *include* cached_tokens ("Cached tokens present in the prompt"); completion_tokens
# and output_tokens *include* reasoning_tokens. Semconv-inclusive already, so no arithmetic.

def from_openai_chat(response_or_usage: Any) -> Usage:
    """OpenAI chat completions / legacy completions (and OpenAI-compatible: Azure, Groq, DeepSeek,
    Together, OpenRouter, Mistral, LiteLLM) -> Usage. Other providers' spellings are read only when
    OpenAI's field is absent, so OpenAI payloads pay for none of them."""
    u = _usage_fields(response_or_usage)
    if u.get("prompt_tokens") is None and u.get("completion_tokens") is None:
        # Groq puts stream usage under x_groq.usage
        groq = _fields(_fields(response_or_usage).get("x_groq")).get("usage")
        if groq is not None:
            u = _fields(groq)
    pd = _fields(u.get("prompt_tokens_details"))
    cd = _fields(u.get("completion_tokens_details"))
    cached = pd.get("cached_tokens")
    if cached is None:
        cached = _other_cache_read(u)
    cache_write = pd.get("cache_write_tokens")
    if cache_write is None:
        cache_write = pd.get("cache_creation_tokens")  # OpenRouter, LiteLLM
        if cache_write is None:
            cache_write = u.get("cache_creation_input_tokens")  # LiteLLM's Anthropic-style field
    write_1h = None
    if cache_write is not None:  # LiteLLM's Anthropic route splits writes by TTL
        write_1h = _fields(pd.get("cache_creation_token_details")).get("ephemeral_1h_input_tokens")
    cost = u.get("cost")
    if cost is not None and not isinstance(cost, (int, float, str, Decimal)):
        cost = _get(cost, "total_cost")  # Perplexity (through LiteLLM): an object
    return Usage.build(
        input_tokens=u.get("prompt_tokens"),
        output_tokens=u.get("completion_tokens"),
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        reasoning_tokens=cd.get("reasoning_tokens"),
        input_audio_tokens=pd.get("audio_tokens"),
        input_image_tokens=pd.get("image_tokens"),
        output_audio_tokens=cd.get("audio_tokens"),
        output_image_tokens=cd.get("image_tokens"),
        provider_cost=cost,
    )


def _other_cache_read(u: Mapping[str, Any]) -> Any:
    """The cache hit of an OpenAI-compatible usage without ``prompt_tokens_details.cached_tokens``."""
    # DeepSeek: prompt_cache_hit_tokens; Together: a top-level cached_tokens; LiteLLM: cache_read_input_tokens;
    # Mistral's API schema: prompt_token_details.cached_tokens (its embeddings send it) or num_cached_tokens.
    for name in ("prompt_cache_hit_tokens", "cached_tokens", "cache_read_input_tokens"):
        value = u.get(name)
        if value is not None:
            return value
    value = _fields(u.get("prompt_token_details")).get("cached_tokens")
    return u.get("num_cached_tokens") if value is None else value


def from_openai_responses(response_or_usage: Any) -> Usage:
    """OpenAI Responses API (``response.usage`` or the ``response.completed`` event's response)."""
    u = _usage_fields(response_or_usage)
    idt = _fields(u.get("input_tokens_details"))
    odt = _fields(u.get("output_tokens_details"))
    cache_write = idt.get("cache_write_tokens")
    return Usage.build(
        input_tokens=u.get("input_tokens"),
        output_tokens=u.get("output_tokens"),
        cache_read_tokens=idt.get("cached_tokens"),
        cache_write_tokens=cache_write if cache_write is not None else idt.get("cache_creation_tokens"),
        reasoning_tokens=odt.get("reasoning_tokens"),
        input_audio_tokens=idt.get("audio_tokens"),
        input_image_tokens=idt.get("image_tokens"),
        provider_cost=u.get("cost"),
    )


def from_openai_embeddings(response_or_usage: Any) -> Usage:
    """OpenAI embeddings: only ``prompt_tokens`` (== ``total_tokens``)."""
    u = _usage_of(response_or_usage, "usage")
    return Usage.build(input_tokens=_get(u, "prompt_tokens", "total_tokens"), provider_cost=_get(u, "cost"))


def from_openai_images(response: Any) -> Usage:
    """OpenAI images.generate: gpt-image-* report token usage; DALL·E only the images."""
    data = _get(response, "data")
    n_images = len(data) if isinstance(data, (list, tuple)) else 0
    u = _get(response, "usage")
    idt = _get(u, "input_tokens_details")
    # openai/types/images_response.py: output_tokens_details (UsageOutputTokensDetails) splits output into
    # image_tokens and text_tokens; without it all output tokens are image tokens.
    out_image = _get(_get(u, "output_tokens_details"), "image_tokens")
    return Usage.build(
        input_tokens=_get(u, "input_tokens"),
        output_tokens=_get(u, "output_tokens"),
        input_image_tokens=_get(idt, "image_tokens"),
        output_image_tokens=_get(u, "output_tokens") if out_image is None else out_image,
        images_generated=n_images,
    )


# --- Anthropic -------------------------------------------------------------------------------------
# Read in anthropic/types/usage.py: input_tokens *excludes* cache_read_input_tokens and
# cache_creation_input_tokens (three disjoint fields), so input = sum of the three. cache_creation
# (CacheCreation) splits writes into ephemeral_5m_input_tokens / ephemeral_1h_input_tokens.
# output_tokens includes thinking; newer payloads add output_tokens_details.thinking_tokens.

def from_anthropic(response_or_usage: Any) -> Usage:
    u = _usage_fields(response_or_usage)  # a field view taken once: each read below is a dict lookup
    base = _Coercer()
    uncached = base.count(u.get("input_tokens"))
    cache_read = base.count(u.get("cache_read_input_tokens"))
    breakdown = _fields(u.get("cache_creation"))
    w5m = breakdown.get("ephemeral_5m_input_tokens")
    w1h = breakdown.get("ephemeral_1h_input_tokens")
    cache_write = base.count(u.get("cache_creation_input_tokens"))
    if cache_write == 0 and (w5m is not None or w1h is not None):
        cache_write = base.count(w5m) + base.count(w1h)
    details = _fields(u.get("output_tokens_details"))
    thinking = details.get("thinking_tokens")
    if thinking is None:
        thinking = details.get("reasoning_tokens")
    return Usage.build(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=u.get("output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=w1h,
        reasoning_tokens=thinking,
        clamped=base.clamped,
    )


def merge_anthropic_stream_usage(start: Any, delta: Any) -> dict[str, Any]:
    """Usage of an Anthropic stream from ``message_start``'s usage and the last ``message_delta``'s.

    ``message_delta`` usage is *cumulative*: its fields replace ``message_start``'s (adding them
    double-counts output); fields it omits keep their ``message_start`` value.
    """
    merged: dict[str, Any] = {}
    for source in (start, delta):
        for key in ("input_tokens", "output_tokens", "cache_read_input_tokens",
                    "cache_creation_input_tokens", "cache_creation", "output_tokens_details"):
            value = _get(source, key)
            if value is not None:
                merged[key] = value
    return merged


# --- Google GenAI (Gemini API and Vertex AI) -------------------------------------------------------
# Read in google/genai/types.py (GenerateContentResponseUsageMetadata): prompt_token_count includes
# cached_content_token_count ("Number of tokens in the cached part of the prompt"); thoughts_token_count
# and tool_use_prompt_token_count are reported *outside* prompt/candidates counts, and total_token_count
# = prompt + tool_use_prompt + candidates + thoughts. So input = prompt + tool_use_prompt (billed as
# input), output = candidates + thoughts.

_GEMINI_MODALITY = {1: "TEXT", 2: "IMAGE", 3: "VIDEO", 4: "AUDIO", 5: "DOCUMENT"}


def _modality_counts(details: Any) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    if not isinstance(details, (list, tuple)):
        return counts
    for item in details:
        modality = _get(item, "modality")
        if modality is not None and not isinstance(modality, (str, int)):
            modality = getattr(modality, "value", None) or getattr(modality, "name", None)
        if isinstance(modality, int):
            modality = _GEMINI_MODALITY.get(modality)
        if isinstance(modality, str):
            counts[modality.upper()] = _get(item, "token_count", "tokenCount")
    return counts


def from_google_genai(response_or_usage: Any) -> Usage:
    u = _usage_of(response_or_usage, "usage_metadata", "usageMetadata")
    base = _Coercer()
    prompt = base.count(_get(u, "prompt_token_count", "promptTokenCount"))
    tool_prompt = base.count(_get(u, "tool_use_prompt_token_count", "toolUsePromptTokenCount"))
    candidates = base.count(_get(u, "candidates_token_count", "candidatesTokenCount"))
    thoughts = base.count(_get(u, "thoughts_token_count", "thoughtsTokenCount"))
    prompt_modalities = _modality_counts(_get(u, "prompt_tokens_details", "promptTokensDetails"))
    out_modalities = _modality_counts(_get(u, "candidates_tokens_details", "candidatesTokensDetails"))
    return Usage.build(
        input_tokens=prompt + tool_prompt,
        output_tokens=candidates + thoughts,
        cache_read_tokens=_get(u, "cached_content_token_count", "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
        input_audio_tokens=prompt_modalities.get("AUDIO"),
        input_image_tokens=prompt_modalities.get("IMAGE"),
        output_audio_tokens=out_modalities.get("AUDIO"),
        output_image_tokens=out_modalities.get("IMAGE"),
        clamped=base.clamped,
    )


# --- AWS Bedrock -----------------------------------------------------------------------------------
# Converse (botocore service model bedrock-runtime, TokenUsage): inputTokens excludes
# cacheReadInputTokens and cacheWriteInputTokens (totalTokens = input + output + cache read + write in
# AWS's prompt-caching examples), so input = the sum. invoke_model meters the same three counts in
# X-Amzn-Bedrock-*-Token-Count response headers, and streams in amazon-bedrock-invocationMetrics.

def from_bedrock_converse(response_or_usage: Any) -> Usage:
    u = _usage_of(response_or_usage, "usage")
    base = _Coercer()
    uncached = base.count(_get(u, "inputTokens", "input_tokens"))
    cache_read = base.count(_get(u, "cacheReadInputTokens", "cacheReadInputTokenCount"))
    cache_write = base.count(_get(u, "cacheWriteInputTokens", "cacheWriteInputTokenCount"))
    # TokenUsage.cacheDetails (botocore/data/bedrock-runtime/2023-09-30/service-2.json, CacheDetail):
    # cache writes by TTL, {"ttl": "5m" | "1h", "inputTokens": n}.
    details = _get(u, "cacheDetails")
    write_1h = None
    if isinstance(details, (list, tuple)):
        write_1h = sum(base.count(_get(d, "inputTokens")) for d in details if _get(d, "ttl") == "1h")
    return Usage.build(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=_get(u, "outputTokens", "output_tokens"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_1h_tokens=write_1h,
        clamped=base.clamped,
    )


def from_bedrock_invocation_metrics(metrics: Any) -> Usage:
    """``amazon-bedrock-invocationMetrics`` of an invoke_model stream's last chunk."""
    base = _Coercer()
    uncached = base.count(_get(metrics, "inputTokenCount"))
    cache_read = base.count(_get(metrics, "cacheReadInputTokenCount"))
    cache_write = base.count(_get(metrics, "cacheWriteInputTokenCount"))
    return Usage.build(
        input_tokens=uncached + cache_read + cache_write,
        output_tokens=_get(metrics, "outputTokenCount"),
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        clamped=base.clamped,
    )


_BEDROCK_HEADERS = {
    "x-amzn-bedrock-input-token-count": "inputTokenCount",
    "x-amzn-bedrock-output-token-count": "outputTokenCount",
    "x-amzn-bedrock-cache-read-input-token-count": "cacheReadInputTokenCount",
    "x-amzn-bedrock-cache-write-input-token-count": "cacheWriteInputTokenCount",
}


def from_bedrock_headers(headers: Mapping[str, Any]) -> Usage | None:
    """invoke_model's metering headers (case-insensitive), or None when the response has none."""
    metrics: dict[str, Any] = {}
    for key, value in headers.items():
        name = _BEDROCK_HEADERS.get(str(key).lower())
        if name is not None:
            metrics[name] = value
    if "inputTokenCount" not in metrics and "outputTokenCount" not in metrics:
        return None
    return from_bedrock_invocation_metrics(metrics)


def from_bedrock_invoke_body(body: Any) -> Usage | None:
    """The model's own counts in an invoke_model JSON body, for when Bedrock's metering (headers,
    invocation metrics) is missing; None when the body has none. Formats, told apart by their keys:
    Anthropic Messages ``usage`` (input excludes cache: :func:`from_anthropic`), Amazon Nova ``usage``
    (Converse-shaped: :func:`from_bedrock_converse`), Meta Llama ``prompt_token_count`` /
    ``generation_token_count``, Amazon Titan ``inputTextTokenCount`` and ``results[].tokenCount``
    (embeddings: the input count only). Llama and Titan have no prompt cache: their counts are plain."""
    u = _get(body, "usage")
    if u is not None:
        if _get(u, "input_tokens", "output_tokens") is not None:
            return from_anthropic(u)
        if _get(u, "inputTokens", "outputTokens") is not None:
            return from_bedrock_converse(u)
    prompt, generated = _get(body, "prompt_token_count"), _get(body, "generation_token_count")
    if prompt is not None or generated is not None:
        return Usage.build(input_tokens=prompt, output_tokens=generated)
    titan_input, results = _get(body, "inputTextTokenCount"), _get(body, "results")
    outputs = [_get(r, "tokenCount") for r in results] if isinstance(results, (list, tuple)) else []
    if titan_input is None and all(o is None for o in outputs):
        return None
    base = _Coercer()
    output = sum(base.count(o) for o in outputs)
    return Usage.build(input_tokens=titan_input, output_tokens=output, clamped=base.clamped)


# --- Mistral ---------------------------------------------------------------------------------------
# mistralai/client/models/usageinfo.py: prompt_tokens / completion_tokens as OpenAI (extra fields kept);
# recorded payloads carry prompt_tokens_details.cached_tokens included in prompt_tokens, so the OpenAI
# rules apply. Mistral's API schema also spells the cache hit prompt_token_details.cached_tokens and
# num_cached_tokens: from_openai_chat reads those when the usual field is absent.

from_mistral = from_openai_chat


# --- Cohere ----------------------------------------------------------------------------------------
# cohere/types/usage.py (v2) and ApiMeta (v1): `tokens` are all tokens the model saw, cached included
# (cached_tokens alongside); `billed_units` are what Cohere charges, which is what we price.

def from_cohere(response_or_usage: Any) -> Usage:
    u = _usage_of(response_or_usage, "usage", "meta")
    tokens = _get(u, "tokens")
    billed = _get(u, "billed_units")
    billed_in = _get(billed, "input_tokens")
    billed_out = _get(billed, "output_tokens")
    input_tokens = _get(tokens, "input_tokens")
    output_tokens = _get(tokens, "output_tokens")
    if tokens is None:  # embed responses carry only billed_units
        input_tokens, output_tokens = billed_in, billed_out
    return Usage.build(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=_get(u, "cached_tokens"),
        billed_input_tokens=billed_in if billed is not None else None,
        billed_output_tokens=(billed_out or 0) if billed is not None else None,
    )


# --- Ollama ----------------------------------------------------------------------------------------
# ollama/_types.py (GenerateResponse/ChatResponse): prompt_eval_count and eval_count; Ollama omits
# prompt_eval_count when the whole prompt came from its KV cache, which reads as 0 here.

def from_ollama(response: Any) -> Usage:
    return Usage.build(
        input_tokens=_get(response, "prompt_eval_count"),
        output_tokens=_get(response, "eval_count"),
    )


# --- LiteLLM ---------------------------------------------------------------------------------------
# litellm/types/utils.py (Usage, PromptTokensDetailsWrapper): litellm reports every provider in OpenAI's
# inclusive shape. Read in its transformations: Anthropic (llms/anthropic/chat/transformation.py,
# calculate_usage) sets prompt_tokens = input + cache_read + cache_creation, cached_tokens = cache reads,
# cache_creation_tokens = cache writes with cache_creation_token_details (5m/1h); Bedrock Converse adds
# cacheRead/cacheWrite into prompt_tokens the same way; Gemini's completion_tokens include thoughts. The
# OpenAI route keeps the OpenAI payload's fields (cache_write_tokens). Perplexity's cost is an object.

# Every one of those spellings is a fallback of from_openai_chat.
from_litellm = from_openai_chat
