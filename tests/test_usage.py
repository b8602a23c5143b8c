"""Unit and property tests of the Usage record: coercion, clamping, leaves, sums and provider cost."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmtally import semconv, usage
from llmtally.usage import EMPTY_USAGE, Usage

COUNT_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "output_audio_tokens",
    "output_image_tokens",
    "images_generated",
)
OPTIONAL_COUNT_FIELDS = ("billed_input_tokens", "billed_output_tokens")


def assert_consistent(u: Usage) -> None:
    """The invariants every built Usage must satisfy, whatever it was built from."""
    for name in COUNT_FIELDS:
        value = getattr(u, name)
        assert type(value) is int, name
        assert value >= 0, name
    for name in OPTIONAL_COUNT_FIELDS:
        value = getattr(u, name)
        assert value is None or (type(value) is int and value >= 0), name
    leaves = u.leaves()
    assert tuple(leaves) == semconv.TOKEN_LEAVES
    assert all(type(v) is int and v >= 0 for v in leaves.values()), leaves
    assert sum(leaves.values()) == u.input_tokens + u.output_tokens == u.total_tokens
    assert u.cache_write_1h_tokens <= u.cache_write_tokens
    assert u.cache_write_5m_tokens >= 0
    for part in ("input_audio_tokens", "input_image_tokens"):
        assert getattr(u, part) <= u.input_tokens
    for part in ("output_audio_tokens", "output_image_tokens"):
        assert getattr(u, part) <= u.output_tokens
    cost = u.provider_cost
    assert cost is None or (isinstance(cost, Decimal) and cost.is_finite() and cost >= 0)
    assert isinstance(u.estimated, bool)
    assert isinstance(u.clamped, bool)


# --- construction and defaults ---------------------------------------------------------------------

def test_defaults_and_empty() -> None:
    assert Usage() == EMPTY_USAGE == Usage.build()
    assert EMPTY_USAGE.leaves() == dict.fromkeys(semconv.TOKEN_LEAVES, 0)
    assert EMPTY_USAGE.billed_input_tokens is None
    assert EMPTY_USAGE.provider_cost is None
    assert not EMPTY_USAGE.clamped
    assert not EMPTY_USAGE.estimated


def test_frozen() -> None:
    u = Usage.build(input_tokens=1)
    with pytest.raises(FrozenInstanceError):
        u.input_tokens = 2  # type: ignore[misc]


def test_clean_payload_is_kept_exactly() -> None:
    u = Usage.build(
        input_tokens=100,
        output_tokens=40,
        cache_read_tokens=30,
        cache_write_tokens=20,
        cache_write_1h_tokens=5,
        reasoning_tokens=10,
        input_audio_tokens=7,
        input_image_tokens=8,
        output_audio_tokens=3,
        output_image_tokens=4,
        images_generated=2,
        billed_input_tokens=90,
        billed_output_tokens=35,
    )
    assert u == Usage(
        input_tokens=100,
        output_tokens=40,
        cache_read_tokens=30,
        cache_write_tokens=20,
        cache_write_1h_tokens=5,
        reasoning_tokens=10,
        input_audio_tokens=7,
        input_image_tokens=8,
        output_audio_tokens=3,
        output_image_tokens=4,
        images_generated=2,
        billed_input_tokens=90,
        billed_output_tokens=35,
    )
    assert not u.clamped
    # derived: 100 - 30 - 20 = 50 uncached; 20 - 5 = 15 five-minute writes; 40 - 10 = 30 visible
    assert u.uncached_input_tokens == 50
    assert u.cache_write_5m_tokens == 15
    assert u.visible_output_tokens == 30
    assert u.total_tokens == 140


def test_estimated_and_clamped_flags_pass_through() -> None:
    assert Usage.build(estimated=True).estimated
    assert Usage.build(clamped=True).clamped
    u = Usage.build(input_tokens=3)
    est = u.as_estimated()
    assert est.estimated and not u.estimated
    assert est.input_tokens == 3


# --- clamping of inconsistent sub-counts -----------------------------------------------------------

def test_cache_read_larger_than_input_is_clamped_to_input() -> None:
    u = Usage.build(input_tokens=10, cache_read_tokens=15)
    assert (u.input_tokens, u.cache_read_tokens, u.uncached_input_tokens) == (10, 10, 0)
    assert u.clamped


def test_cache_write_limited_to_what_cache_read_left() -> None:
    # 10 input, 6 read: at most 10 - 6 = 4 tokens can have been written
    u = Usage.build(input_tokens=10, cache_read_tokens=6, cache_write_tokens=9)
    assert (u.cache_read_tokens, u.cache_write_tokens, u.uncached_input_tokens) == (6, 4, 0)
    assert u.clamped


def test_cache_write_1h_larger_than_cache_write() -> None:
    u = Usage.build(input_tokens=10, cache_write_tokens=3, cache_write_1h_tokens=5)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens, u.cache_write_5m_tokens) == (3, 3, 0)
    assert u.clamped


def test_cache_write_1h_follows_clamped_cache_write() -> None:
    # write 8 (1h: 8) into an input of 5: write clamps to 5, the 1h part with it
    u = Usage.build(input_tokens=5, cache_write_tokens=8, cache_write_1h_tokens=8)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (5, 5)
    assert u.clamped


def test_reasoning_larger_than_output() -> None:
    u = Usage.build(output_tokens=4, reasoning_tokens=9)
    assert (u.output_tokens, u.reasoning_tokens, u.visible_output_tokens) == (4, 4, 0)
    assert u.clamped


@pytest.mark.parametrize(
    ("field", "total"),
    [
        ("input_audio_tokens", "input_tokens"),
        ("input_image_tokens", "input_tokens"),
        ("output_audio_tokens", "output_tokens"),
        ("output_image_tokens", "output_tokens"),
    ],
)
def test_modality_parts_clamped_to_their_total(field: str, total: str) -> None:
    u = Usage.build(**{total: 3, field: 7})
    assert getattr(u, field) == 3
    assert u.clamped


def test_sub_counts_without_totals_are_clamped_to_zero() -> None:
    u = Usage.build(cache_read_tokens=5, cache_write_tokens=5, reasoning_tokens=5)
    assert u == Usage(clamped=True)


# --- coercion of each kind of untrusted value ------------------------------------------------------

def test_negative_counts_become_zero_and_flag() -> None:
    u = Usage.build(input_tokens=-5, output_tokens=3)
    assert (u.input_tokens, u.output_tokens) == (0, 3)
    assert u.clamped
    assert Usage.build(billed_input_tokens=-1).billed_input_tokens == 0


def test_none_counts_are_zero_without_flag() -> None:
    u = Usage.build(input_tokens=None, output_tokens=None, cache_read_tokens=None, reasoning_tokens=None)
    assert u == EMPTY_USAGE
    assert not u.clamped


def test_none_billed_counts_stay_none() -> None:
    u = Usage.build(billed_input_tokens=None, billed_output_tokens=0)
    assert u.billed_input_tokens is None
    assert u.billed_output_tokens == 0
    assert not u.clamped


@pytest.mark.parametrize(("raw", "value"), [("12", 12), (" 12 ", 12), ("12.0", 12), ("1e2", 100)])
def test_integral_numeric_strings_are_accepted(raw: str, value: int) -> None:
    # Bedrock metering headers and some gateways send counts as strings.
    u = Usage.build(input_tokens=raw)
    assert u.input_tokens == value
    assert not u.clamped


def test_fractional_numeric_string_truncates_and_flags() -> None:
    u = Usage.build(input_tokens="12.5")
    assert u.input_tokens == 12
    assert u.clamped


@pytest.mark.parametrize("raw", ["abc", "", "12 tokens", "0x10", "--1"])
def test_non_numeric_strings_become_zero_and_flag(raw: str) -> None:
    u = Usage.build(output_tokens=raw)
    assert u.output_tokens == 0
    assert u.clamped


def test_negative_numeric_string() -> None:
    u = Usage.build(input_tokens="-3")
    assert u.input_tokens == 0
    assert u.clamped


def test_integral_float_is_accepted() -> None:
    # cohere/types/usage_tokens.py types counts as Optional[float]: 577.0 is a clean count.
    u = Usage.build(input_tokens=577.0, output_tokens=113.0)
    assert (u.input_tokens, u.output_tokens) == (577, 113)
    assert type(u.input_tokens) is int
    assert not u.clamped


def test_fractional_float_truncates_and_flags() -> None:
    u = Usage.build(input_tokens=3.7)
    assert u.input_tokens == 3
    assert u.clamped


def test_decimal_counts() -> None:
    assert Usage.build(input_tokens=Decimal("7")) == Usage(input_tokens=7)
    frac = Usage.build(input_tokens=Decimal("7.5"))
    assert frac.input_tokens == 7 and frac.clamped


@pytest.mark.parametrize("raw", [True, False])
def test_bool_is_never_a_count(raw: bool) -> None:
    u = Usage.build(input_tokens=raw)
    assert u.input_tokens == 0
    assert u.clamped


@pytest.mark.parametrize(
    "raw", [math.nan, math.inf, -math.inf, "nan", "NaN", "inf", "-inf", Decimal("NaN"), Decimal("sNaN"),
            Decimal("Infinity"), "1e400"]
)
def test_nan_and_infinities_become_zero_and_flag(raw: object) -> None:
    u = Usage.build(input_tokens=raw)
    assert u.input_tokens == 0
    assert u.clamped


class _Junk:
    def __int__(self) -> int:  # even an object that *could* be an int is not trusted
        return 5

    def __float__(self) -> float:
        return 5.0


@pytest.mark.parametrize(
    "raw",
    [{"tokens": 5}, [5], (5,), {5}, object(), _Junk(), b"5", bytearray(b"5"), 5j, {"nested": {"a": [1, 2]}}],
)
def test_junk_objects_become_zero_and_flag(raw: object) -> None:
    u = Usage.build(input_tokens=10, output_tokens=raw, cache_read_tokens=raw)
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens) == (10, 0, 0)
    assert u.clamped


def test_huge_values_never_raise() -> None:
    import enum

    class Huge(enum.IntEnum):  # an int subclass too large for float()
        BIG = 10**400

    u = Usage.build(input_tokens=Huge.BIG, output_tokens=10**400, provider_cost=10**5000)
    assert u.input_tokens == 0
    assert u.output_tokens == 10**400  # a plain int is exact, however large
    assert u.provider_cost is None
    assert u.clamped
    assert_consistent(u)


def test_images_generated_is_independent_of_tokens() -> None:
    u = Usage.build(images_generated=3)
    assert u.images_generated == 3
    assert u.total_tokens == 0
    assert not u.clamped


# --- leaves -----------------------------------------------------------------------------------------

def test_leaves_are_disjoint_and_sum_to_total() -> None:
    u = Usage.build(
        input_tokens=1000, output_tokens=300, cache_read_tokens=600, cache_write_tokens=250,
        reasoning_tokens=120,
    )
    assert u.leaves() == {
        semconv.TokenLeaf.UNCACHED_INPUT: 150,  # 1000 - 600 - 250
        semconv.TokenLeaf.CACHE_READ: 600,
        semconv.TokenLeaf.CACHE_WRITE: 250,
        semconv.TokenLeaf.OUTPUT: 180,  # 300 - 120
        semconv.TokenLeaf.REASONING: 120,
    }
    assert sum(u.leaves().values()) == 1300 == u.input_tokens + u.output_tokens


def test_leaves_keys_are_the_semconv_leaves_in_order() -> None:
    assert tuple(Usage().leaves()) == semconv.TOKEN_LEAVES
    assert len(set(semconv.TOKEN_LEAVES)) == 5


# --- __add__ ----------------------------------------------------------------------------------------

def test_add_sums_every_count() -> None:
    a = Usage.build(
        input_tokens=10, output_tokens=5, cache_read_tokens=2, cache_write_tokens=3, cache_write_1h_tokens=1,
        reasoning_tokens=1, input_audio_tokens=1, input_image_tokens=2, output_audio_tokens=1,
        output_image_tokens=2, images_generated=1, billed_input_tokens=9, billed_output_tokens=4,
        provider_cost=Decimal("0.1"),
    )
    b = Usage.build(
        input_tokens=20, output_tokens=7, cache_read_tokens=4, cache_write_tokens=6, cache_write_1h_tokens=2,
        reasoning_tokens=3, input_audio_tokens=2, input_image_tokens=3, output_audio_tokens=2,
        output_image_tokens=3, images_generated=2, billed_input_tokens=19, billed_output_tokens=6,
        provider_cost=Decimal("0.2"),
    )
    s = a + b
    for name in COUNT_FIELDS + OPTIONAL_COUNT_FIELDS:
        assert getattr(s, name) == getattr(a, name) + getattr(b, name), name
    assert s.provider_cost == Decimal("0.3")  # exact: no binary float in between
    assert sum(s.leaves().values()) == s.total_tokens == 42
    assert not s.clamped and not s.estimated


def test_add_optional_fields() -> None:
    none = Usage.build(input_tokens=1)
    some = Usage.build(input_tokens=1, billed_input_tokens=5, provider_cost="0.5")
    assert (none + none).billed_input_tokens is None
    assert (none + none).provider_cost is None
    assert (none + some).billed_input_tokens == 5
    assert (some + none).provider_cost == Decimal("0.5")
    assert (some + some).provider_cost == Decimal("1.0")


def test_add_keeps_a_zero_cost_decimal() -> None:
    free = Usage.build(provider_cost=0)
    for total in (EMPTY_USAGE + free, free + EMPTY_USAGE, free + free):
        assert isinstance(total.provider_cost, Decimal)
        assert total.provider_cost == 0
    assert (EMPTY_USAGE + Usage.build(billed_input_tokens=0)).billed_input_tokens == 0


def test_add_flags_are_sticky() -> None:
    clean = Usage.build(input_tokens=1)
    assert (clean + Usage.build(input_tokens=-1)).clamped
    assert (Usage.build(input_tokens=-1) + clean).clamped
    assert (clean + clean.as_estimated()).estimated
    assert not (clean + clean).clamped


def test_add_identity_and_other_types() -> None:
    u = Usage.build(input_tokens=3, output_tokens=2)
    assert u + EMPTY_USAGE == u
    assert sum([u, u, u], EMPTY_USAGE) == Usage(input_tokens=9, output_tokens=6)
    assert u.__add__(3) is NotImplemented  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = u + 3  # type: ignore[operator]


# --- provider_cost ----------------------------------------------------------------------------------

def test_provider_cost_float_is_exact_decimal() -> None:
    u = Usage.build(provider_cost=0.1)
    assert u.provider_cost == Decimal("0.1")
    assert u.provider_cost != Decimal.from_float(0.1)  # the binary expansion of 0.1 must not leak in
    assert str(u.provider_cost) == "0.1"
    assert not u.clamped


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, Decimal(0)),
        (2, Decimal(2)),
        (0.000123, Decimal("0.000123")),
        (1.5e-7, Decimal("1.5E-7")),
        ("0.0042", Decimal("0.0042")),
        (Decimal("0.30000000000000004"), Decimal("0.30000000000000004")),
    ],
)
def test_provider_cost_coercion(raw: object, expected: Decimal) -> None:
    u = Usage.build(provider_cost=raw)
    assert isinstance(u.provider_cost, Decimal)
    assert u.provider_cost == expected
    assert not u.clamped


def test_provider_cost_none_is_none() -> None:
    u = Usage.build(provider_cost=None)
    assert u.provider_cost is None
    assert not u.clamped


def test_provider_cost_bool_is_not_money() -> None:
    assert Usage.build(provider_cost=True).provider_cost is None


@pytest.mark.parametrize(
    "raw", [-0.01, "-1", "abc", "", math.nan, math.inf, "NaN", "Infinity", Decimal("sNaN"), [0.1], {"usd": 1}]
)
def test_bad_provider_cost_is_dropped_and_flags(raw: object) -> None:
    u = Usage.build(provider_cost=raw)
    assert u.provider_cost is None
    assert u.clamped


# --- property tests ---------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.integers(min_value=-10, max_value=10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.binary(max_size=4),
    st.just(object()),
)
_garbage = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.text(max_size=5), children, max_size=3),
        st.tuples(children),
    ),
    max_leaves=6,
)
_build_fields = (*COUNT_FIELDS, *OPTIONAL_COUNT_FIELDS, "provider_cost")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({}, optional=dict.fromkeys(_build_fields, _garbage)))
def test_build_never_raises_and_is_consistent(kwargs: dict[str, Any]) -> None:
    u = Usage.build(**kwargs)
    assert_consistent(u)


@settings(max_examples=300)
@given(
    inp=st.integers(min_value=0, max_value=10**12),
    out=st.integers(min_value=0, max_value=10**12),
    data=st.data(),
)
def test_consistent_counts_are_kept_exactly(inp: int, out: int, data: st.DataObject) -> None:
    cr = data.draw(st.integers(min_value=0, max_value=inp))
    cw = data.draw(st.integers(min_value=0, max_value=inp - cr))
    cw1h = data.draw(st.integers(min_value=0, max_value=cw))
    rs = data.draw(st.integers(min_value=0, max_value=out))
    u = Usage.build(
        input_tokens=inp, output_tokens=out, cache_read_tokens=cr, cache_write_tokens=cw,
        cache_write_1h_tokens=cw1h, reasoning_tokens=rs,
    )
    assert u == Usage(
        input_tokens=inp, output_tokens=out, cache_read_tokens=cr, cache_write_tokens=cw,
        cache_write_1h_tokens=cw1h, reasoning_tokens=rs,
    )
    assert not u.clamped
    assert u.leaves() == {
        semconv.TokenLeaf.UNCACHED_INPUT: inp - cr - cw,
        semconv.TokenLeaf.CACHE_READ: cr,
        semconv.TokenLeaf.CACHE_WRITE: cw,
        semconv.TokenLeaf.OUTPUT: out - rs,
        semconv.TokenLeaf.REASONING: rs,
    }


@settings(max_examples=400)
@given(data=st.data(), broken=st.sampled_from((None, *_build_fields)),
       bad=st.one_of(st.integers(min_value=-3, max_value=-1), st.integers(min_value=10**6, max_value=10**7),
                     st.booleans(), st.floats(allow_nan=False, max_value=100), st.just("7"), st.none()))
def test_fast_path_equals_the_coercing_path(data: st.DataObject, broken: str | None, bad: Any) -> None:
    """build() answers well-formed counts without the coercer; it must agree with the coercer exactly,
    for consistent payloads and for payloads with one field out of bounds or of another type."""
    inp = data.draw(st.integers(min_value=0, max_value=10**5))
    out = data.draw(st.integers(min_value=0, max_value=10**5))
    cr = data.draw(st.integers(min_value=0, max_value=inp))
    cw = data.draw(st.integers(min_value=0, max_value=inp - cr))
    full: dict[str, Any] = {
        "input_tokens": inp, "output_tokens": out, "cache_read_tokens": cr, "cache_write_tokens": cw,
        "cache_write_1h_tokens": data.draw(st.integers(min_value=0, max_value=cw)),
        "reasoning_tokens": data.draw(st.integers(min_value=0, max_value=out)),
        "input_audio_tokens": data.draw(st.integers(min_value=0, max_value=inp)),
        "input_image_tokens": data.draw(st.integers(min_value=0, max_value=inp)),
        "output_audio_tokens": data.draw(st.integers(min_value=0, max_value=out)),
        "output_image_tokens": data.draw(st.integers(min_value=0, max_value=out)),
        "images_generated": data.draw(st.integers(min_value=0, max_value=4)),
        "billed_input_tokens": None, "billed_output_tokens": None, "provider_cost": None,
        "estimated": data.draw(st.booleans()), "clamped": False,
    }
    if broken is not None:
        full[broken] = bad
    assert Usage.build(**full) == Usage._coerced(**full)


_SMALL = {"input_tokens": 100, "output_tokens": 50, "cache_read_tokens": 40, "cache_write_tokens": 30,
          "cache_write_1h_tokens": 10, "reasoning_tokens": 20, "input_audio_tokens": 5, "input_image_tokens": 5,
          "output_audio_tokens": 5, "output_image_tokens": 5, "images_generated": 1}


@pytest.mark.parametrize("bad", [10**6, -1, True, 1.0, "7", Decimal(3)], ids=repr)
@pytest.mark.parametrize("field", [*COUNT_FIELDS, *OPTIONAL_COUNT_FIELDS, "provider_cost"])
def test_fast_path_hands_every_irregular_field_to_the_coercer(field: str, bad: object) -> None:
    """Each bound and type check of the fast path, one field at a time (deterministic, unlike sampling)."""
    full: dict[str, Any] = {**_SMALL, "billed_input_tokens": None, "billed_output_tokens": None,
                            "provider_cost": None, "estimated": False, "clamped": False, field: bad}
    assert Usage.build(**full) == Usage._coerced(**full)


def test_fast_path_keeps_a_consistent_payload_as_the_coercer_does() -> None:
    full = {**_SMALL, "billed_input_tokens": None, "billed_output_tokens": None, "provider_cost": None,
            "estimated": False, "clamped": False}
    assert Usage.build(**_SMALL) == Usage._coerced(**full) == Usage(100, 50, 40, 30, 10, 20, 5, 5, 5, 5, 1)


@settings(max_examples=200)
@given(st.lists(st.fixed_dictionaries({}, optional=dict.fromkeys(_build_fields, _garbage)), max_size=4))
def test_sum_of_built_usages_is_consistent(many: list[dict[str, Any]]) -> None:
    total = EMPTY_USAGE
    for kwargs in many:
        total = total + Usage.build(**kwargs)
    assert_consistent(total)


# Field names the normalisers look for, so garbage payloads actually reach their code paths.
_PAYLOAD_KEYS = (
    "usage", "usage_metadata", "usageMetadata", "meta", "x_groq", "data", "prompt_tokens",
    "completion_tokens", "total_tokens", "prompt_tokens_details", "completion_tokens_details",
    "cached_tokens", "cache_write_tokens",
    "cache_creation_tokens", "reasoning_tokens", "audio_tokens", "image_tokens", "prompt_cache_hit_tokens",
    "cost", "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details",
    "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation", "ephemeral_5m_input_tokens",
    "ephemeral_1h_input_tokens", "thinking_tokens", "prompt_token_count", "promptTokenCount",
    "candidatesTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount", "cachedContentTokenCount",
    "promptTokensDetails", "candidatesTokensDetails", "modality", "tokenCount", "inputTokens", "outputTokens",
    "cacheReadInputTokens", "cacheWriteInputTokens", "cacheDetails", "ttl", "inputTokenCount",
    "outputTokenCount", "cacheReadInputTokenCount", "cacheWriteInputTokenCount", "tokens", "billed_units",
    "prompt_eval_count", "eval_count",
)
_payload_scalars = st.one_of(
    _scalars, st.sampled_from(["TEXT", "AUDIO", "IMAGE", "1h", "5m", 1, 2, 4]), st.integers(0, 10**6)
)
_payloads = st.recursive(
    _payload_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.sampled_from(_PAYLOAD_KEYS), children, max_size=5),
    ),
    max_leaves=12,
)
_NORMALISERS = (
    usage.from_openai_chat,
    usage.from_openai_responses,
    usage.from_openai_embeddings,
    usage.from_openai_images,
    usage.from_anthropic,
    usage.from_google_genai,
    usage.from_bedrock_converse,
    usage.from_bedrock_invocation_metrics,
    usage.from_mistral,
    usage.from_cohere,
    usage.from_ollama,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(payload=_payloads, which=st.sampled_from(_NORMALISERS))
def test_normalisers_never_raise_on_garbage(payload: Any, which: Any) -> None:
    assert_consistent(which(payload))


_header_names = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "X-Amzn-Bedrock-Input-Token-Count",
            "x-amzn-bedrock-output-token-count",
            "X-AMZN-BEDROCK-CACHE-READ-INPUT-TOKEN-COUNT",
            "x-amzn-bedrock-cache-write-input-token-count",
        ]
    ),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(start=_payloads, delta=_payloads, headers=st.dictionaries(_header_names, _payload_scalars, max_size=5))
def test_stream_and_header_helpers_never_raise_on_garbage(start: Any, delta: Any, headers: Any) -> None:
    assert_consistent(usage.from_anthropic(usage.merge_anthropic_stream_usage(start, delta)))
    from_headers = usage.from_bedrock_headers(headers)
    assert from_headers is None or isinstance(from_headers, Usage)
    if from_headers is not None:
        assert_consistent(from_headers)
