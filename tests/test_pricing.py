"""Cost tests. Every expected amount is derived by hand here from the provider's published price per
1M tokens (quoted in the comment), never read back from the engine."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmtally import semconv
from llmtally.pricing import PriceBook, load_overrides
from llmtally.usage import Usage

D = Decimal
M = D(1_000_000)
AT = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def cost_of(book: PriceBook, usage: Usage, provider: str, model: str, at: datetime = AT,
            response_model: str | None = None, service_tier: str | None = None):
    return book.cost(usage, provider=provider, request_model=model, response_model=response_model,
                     at=at, service_tier=service_tier)


def assert_breakdown_sums(cost) -> None:
    assert cost.amount == sum(cost.breakdown.values())
    assert set(cost.breakdown) == set(semconv.TOKEN_LEAVES)


def test_gpt_4o_mini_with_cached_tokens(book: PriceBook) -> None:
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    usage = Usage.build(input_tokens=12_000, output_tokens=800, cache_read_tokens=10_000)
    cost = cost_of(book, usage, "openai", "gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18")
    uncached = D(2_000) * D("0.15") / M  # 0.0003
    cached = D(10_000) * D("0.075") / M  # 0.00075
    output = D(800) * D("0.60") / M  # 0.00048
    assert cost.status == "priced" and cost.source == "local"
    assert cost.amount == uncached + cached + output == D("0.00153")
    assert cost.breakdown["cache_read"] == D("0.00075")
    assert cost.priced_as == "gpt-4o-mini"
    assert_breakdown_sums(cost)


def test_o3_reasoning_tokens_are_billed_as_output(book: PriceBook) -> None:
    # o3 since 2025-06-10: $2 input, $0.50 cached input, $8 output; reasoning tokens bill as output.
    usage = Usage.build(input_tokens=1_000, output_tokens=5_000, reasoning_tokens=4_200)
    cost = cost_of(book, usage, "openai", "o3")
    assert cost.breakdown["reasoning"] == D(4_200) * 8 / M == D("0.0336")
    assert cost.breakdown["output"] == D(800) * 8 / M == D("0.0064")
    assert cost.amount == D("0.002") + D("0.0336") + D("0.0064") == D("0.042")
    assert_breakdown_sums(cost)


def test_price_changed_on_a_date_before_and_after(book: PriceBook) -> None:
    # OpenAI cut o3 from $10/$40 to $2/$8 per 1M on 2025-06-10.
    usage = Usage.build(input_tokens=1_000_000, output_tokens=1_000_000)
    before = cost_of(book, usage, "openai", "o3", at=datetime(2025, 6, 9, 23, 59, tzinfo=timezone.utc))
    after = cost_of(book, usage, "openai", "o3", at=datetime(2025, 6, 10, 0, 1, tzinfo=timezone.utc))
    assert before.amount == D(10) + D(40)
    assert after.amount == D(2) + D(8)


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000


@pytest.mark.parametrize(("provider", "model", "at", "expected"), [
    # o3: $10 in / $40 out per 1M until 2025-06-09, $2 / $8 from 2025-06-10
    ("openai", "o3", datetime(2025, 6, 9, 23, 59, tzinfo=timezone.utc), D(10) + D(40)),
    ("openai", "o3", datetime(2025, 6, 10, 0, 1, tzinfo=timezone.utc), D(2) + D(8)),
    # deepseek-chat: $0.27 in / $1.10 out in the 00:30-16:30 UTC window, half ($0.135 / $0.55) outside
    ("deepseek", "deepseek-chat", datetime(2025, 9, 1, 12, tzinfo=timezone.utc), D("0.27") + D("1.10")),
    ("deepseek", "deepseek-chat", datetime(2025, 9, 1, 20, tzinfo=timezone.utc), D("0.135") + D("0.55")),
])
def test_epoch_ns_prices_like_the_datetime(provider: str, model: str, at: datetime, expected: Decimal) -> None:
    """The per-call path passes the start time as epoch ns: the datetime's price, cache filled or not."""
    usage = Usage.build(input_tokens=1_000_000, output_tokens=1_000_000)
    first_ns, first_dt = PriceBook(), PriceBook()  # fresh caches, filled by one form or the other
    assert first_ns.cost(usage, provider=provider, request_model=model, at_ns=_ns(at)).amount == expected
    assert first_dt.cost(usage, provider=provider, request_model=model, at=at).amount == expected
    assert first_ns.cost(usage, provider=provider, request_model=model, at=at).amount == expected
    assert first_dt.cost(usage, provider=provider, request_model=model, at_ns=_ns(at)).amount == expected


def test_a_non_utc_datetime_prices_by_its_utc_day(book: PriceBook) -> None:
    # 2025-06-10 01:00 at UTC+2 is 2025-06-09 23:00 UTC: still the old o3 price, even after a call on
    # the same local day (the cache is keyed by UTC day, not by the datetime's own date).
    usage = Usage.build(input_tokens=1_000_000, output_tokens=1_000_000)
    plus2 = timezone(timedelta(hours=2))
    fresh = PriceBook()
    assert cost_of(fresh, usage, "openai", "o3", at=datetime(2025, 6, 10, 23, 0, tzinfo=plus2)).amount == D(10)
    assert cost_of(fresh, usage, "openai", "o3", at=datetime(2025, 6, 10, 1, 0, tzinfo=plus2)).amount == D(50)


def test_claude_5m_and_1h_cache_writes_and_cache_reads(book: PriceBook) -> None:
    # Claude Sonnet 4.5 (<=200k input): $3 input, $3.75 5-minute cache write, $6 1-hour cache write,
    # $0.30 cache read, $15 output per 1M tokens.
    raw = {"input_tokens": 2_000, "cache_read_input_tokens": 50_000, "cache_creation_input_tokens": 30_000,
           "cache_creation": {"ephemeral_5m_input_tokens": 10_000, "ephemeral_1h_input_tokens": 20_000},
           "output_tokens": 1_500}
    from llmtally.usage import from_anthropic

    usage = from_anthropic({"usage": raw})
    assert usage.input_tokens == 82_000  # 2,000 + 50,000 + 30,000: Anthropic's input excludes cache
    cost = cost_of(book, usage, "anthropic", "claude-sonnet-4-5-20250929")
    expected_write = D(10_000) * D("3.75") / M + D(20_000) * D(6) / M  # 0.0375 + 0.12
    assert cost.breakdown["cache_write"] == expected_write == D("0.1575")
    assert cost.breakdown["cache_read"] == D(50_000) * D("0.30") / M == D("0.015")
    assert cost.breakdown["uncached_input"] == D(2_000) * 3 / M == D("0.006")
    assert cost.breakdown["output"] == D(1_500) * 15 / M == D("0.0225")
    assert cost.amount == D("0.201")
    assert_breakdown_sums(cost)


def test_gemini_25_pro_long_context_tier(book: PriceBook) -> None:
    # Gemini 2.5 Pro: prompts <= 200k tokens $1.25 input / $10 output; above 200k every token of the
    # call is priced $2.50 input / $15 output (cached input $0.125 / $0.25).
    small = Usage.build(input_tokens=200_000, output_tokens=1_000)
    large = Usage.build(input_tokens=250_000, output_tokens=1_000, cache_read_tokens=100_000)
    assert cost_of(book, small, "gcp.gemini", "gemini-2.5-pro").amount == \
        D(200_000) * D("1.25") / M + D(1_000) * 10 / M == D("0.26")
    cost = cost_of(book, large, "gcp.gemini", "gemini-2.5-pro")
    assert cost.breakdown["uncached_input"] == D(150_000) * D("2.50") / M == D("0.375")
    assert cost.breakdown["cache_read"] == D(100_000) * D("0.25") / M == D("0.025")
    assert cost.breakdown["output"] == D(1_000) * 15 / M == D("0.015")
    assert cost.amount == D("0.415")


def test_gemini_thoughts_priced_as_output(book: PriceBook) -> None:
    # Gemini 2.5 Flash: $0.30 input, $2.50 output (thinking included) per 1M tokens.
    from llmtally.usage import from_google_genai

    usage = from_google_genai({"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 877,
                                                 "thoughtsTokenCount": 1058, "totalTokenCount": 1940}})
    cost = cost_of(book, usage, "gcp.gemini", "gemini-2.5-flash")
    assert cost.amount == D(5) * D("0.30") / M + D(877 + 1058) * D("2.50") / M == D("0.0048390")


def test_unknown_model_is_unpriced_never_zero(book: PriceBook) -> None:
    usage = Usage.build(input_tokens=100, output_tokens=100)
    cost = cost_of(book, usage, "openai", "gpt-4o-ultra-9000")
    assert cost.status == semconv.CostStatus.UNPRICED
    assert cost.amount is None and not cost.priced
    assert cost_of(book, usage, "groq", "house-model-7b").status == "unpriced"
    assert cost_of(book, usage, "openai", "").status == "unpriced"


def test_provider_returned_cost_wins(book: PriceBook) -> None:
    from llmtally.usage import from_openai_chat

    usage = from_openai_chat({"usage": {"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.000123}})
    cost = cost_of(book, usage, "openrouter", "anthropic/claude-3.5-sonnet")
    assert cost.source == semconv.CostSource.PROVIDER
    assert cost.amount == D("0.000123")  # exact: never Decimal(0.000123) with its binary expansion


def test_override_discounts_a_provider_by_20_percent(tmp_path: Path) -> None:
    # gpt-4o list: $2.50 input, $10 output; a negotiated 20% discount pays 80% of that.
    path = tmp_path / "prices.toml"
    path.write_text("[multipliers]\nopenai = 0.8\n")
    book = PriceBook(load_overrides(path))
    usage = Usage.build(input_tokens=1_000_000, output_tokens=100_000)
    cost = cost_of(book, usage, "openai", "gpt-4o")
    assert cost.amount == (D("2.50") + D("1.00")) * D("0.8") == D("2.8")
    # Other providers are untouched: Claude 3.5 Haiku $0.80 input.
    other = cost_of(book, Usage.build(input_tokens=1_000_000), "anthropic", "claude-3-5-haiku-20241022")
    assert other.amount == D("0.80")
    assert "x0.8" in (cost.catalog or "")


def test_cohere_prices_billed_units_not_tokens(book: PriceBook) -> None:
    # command-a: $2.50 input, $10 output per 1M; Cohere bills billed_units (227 in, 225 out), not the
    # 723/227 tokens the model saw.
    from llmtally.usage import from_cohere

    usage = from_cohere({"meta": {"billed_units": {"input_tokens": 227, "output_tokens": 225},
                                  "tokens": {"input_tokens": 723, "output_tokens": 227}, "cached_tokens": 448}})
    assert usage.input_tokens == 723
    cost = cost_of(book, usage, "cohere", "command-a-03-2025")
    assert cost.amount == D(227) * D("2.5") / M + D(225) * 10 / M == D("0.0028175")


@pytest.mark.parametrize(("provider", "model", "priced_as"), [
    ("openai", "gpt-4o-mini", "gpt-4o-mini"),
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("openai", "gpt-4o", "gpt-4o"),
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # its own (higher) price, not gpt-4o's
    ("openai", "ft:gpt-4o-mini:acme::abc123", "ft:gpt-4o-mini"),
    ("azure.ai.openai", "gpt-4o-mini", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
    ("aws.bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0", None),
    ("aws.bedrock", "amazon.nova-micro-v1:0", "amazon.nova-micro-v1:0"),
    ("gcp.gemini", "models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("gcp.vertex_ai", "gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("openrouter", "openai/gpt-4o-mini", None),
])
def test_model_matching_rules(book: PriceBook, provider: str, model: str, priced_as: str | None) -> None:
    resolved = book.resolve(provider, model, AT)
    assert resolved is not None, model
    if priced_as is not None:
        assert resolved.pricing.model == priced_as


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "gpt-4o-turbo"),  # an unseen variant of a known family
    ("openai", "gpt-4o-mini-ultra"),
    ("anthropic", "claude-sonnet-4-5-turbo"),  # genai-prices would match this by prefix
    ("openai", "gpt"),
    ("openai", "4o"),
    ("gcp.gemini", "gemini-2.5"),
])
def test_no_loose_substring_matches(book: PriceBook, provider: str, model: str) -> None:
    assert book.resolve(provider, model, AT) is None


def test_mini_and_full_model_never_swap(book: PriceBook) -> None:
    usage = Usage.build(input_tokens=1_000_000)
    mini = cost_of(book, usage, "openai", "gpt-4o-mini").amount
    full = cost_of(book, usage, "openai", "gpt-4o").amount
    assert (mini, full) == (D("0.15"), D("2.50"))


def test_response_model_first_then_request_model(book: PriceBook) -> None:
    # The recorded davinci completion reports 'davinci:2023-07-21-v2', which no catalog knows: the
    # request's 'davinci-002' ($2 / $2 per 1M) prices it.
    usage = Usage.build(input_tokens=8, output_tokens=16)
    cost = cost_of(book, usage, "openai", "davinci-002", response_model="davinci:2023-07-21-v2")
    assert cost.amount == D(24) * 2 / M


def test_bedrock_prices_the_request_id_first(book: PriceBook) -> None:
    # AnthropicBedrock's response names 'claude-sonnet-4-5-20250929', which Bedrock prices at the
    # regional rate ($3.30 / 1M input); the request's global profile id is billed at $3.00.
    usage = Usage.build(input_tokens=1_000_000, output_tokens=0)
    global_id = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    served = "claude-sonnet-4-5-20250929"
    assert cost_of(book, usage, "aws.bedrock", global_id, response_model=served).amount == D("3.00")
    assert cost_of(book, usage, "aws.bedrock", "us." + global_id[7:], response_model=served).amount == D("3.30")
    assert cost_of(book, usage, "aws.bedrock", served).amount == D("3.30")


def test_service_tier_variant_after_its_start_date(book: PriceBook) -> None:
    # gpt-5-mini flex tier from 2026-10-12: $0.125 input, $1 output (standard $0.25 / $2).
    usage = Usage.build(input_tokens=1_000_000, output_tokens=1_000_000)
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert cost_of(book, usage, "openai", "gpt-5-mini", at=at, service_tier="flex").amount == D("1.125")
    assert cost_of(book, usage, "openai", "gpt-5-mini", at=at, service_tier="default").amount == D("2.25")
    assert cost_of(book, usage, "openai", "gpt-5-mini", at=at).amount == D("2.25")


def test_off_peak_prices_follow_the_time_of_day(book: PriceBook) -> None:
    # DeepSeek chat in the bundled catalog: $0.27 input in the 00:30-16:30 UTC window, $0.135 outside.
    usage = Usage.build(input_tokens=1_000_000)
    day = cost_of(book, usage, "deepseek", "deepseek-chat", at=datetime(2025, 9, 1, 12, tzinfo=timezone.utc))
    night = cost_of(book, usage, "deepseek", "deepseek-chat", at=datetime(2025, 9, 1, 20, tzinfo=timezone.utc))
    assert (day.amount, night.amount) == (D("0.27"), D("0.135"))


def test_cached_cost_equals_fresh_resolution(book: PriceBook) -> None:
    usage = Usage.build(input_tokens=3_333, output_tokens=777, cache_read_tokens=1_111, reasoning_tokens=7)
    first = cost_of(book, usage, "openai", "gpt-4o-mini")
    second = cost_of(book, usage, "openai", "gpt-4o-mini")
    fresh = PriceBook().cost(usage, provider="openai", request_model="gpt-4o-mini", at=AT)
    assert first.amount == second.amount == fresh.amount


def test_cost_never_raises_on_odd_usage(book: PriceBook) -> None:
    odd = Usage.build(input_tokens="12", output_tokens=-3, cache_read_tokens=99, reasoning_tokens="x")
    cost = cost_of(book, odd, "openai", "gpt-4o-mini")
    assert cost.priced and cost.amount == D(12) * D("0.075") / M  # all 12 input tokens were cache reads


def test_no_network_at_import_init_or_first_cost() -> None:
    # A fresh interpreter whose sockets refuse to connect: importing llmtally, loading the bundled
    # catalog and pricing a call must all work offline.
    import subprocess
    import sys

    code = """
import socket
def refuse(*a, **k):
    raise SystemExit("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
import llmtally
from llmtally import PriceBook, Usage
cost = PriceBook().cost(Usage(input_tokens=10, output_tokens=5), provider="openai", request_model="gpt-4o-mini")
print(cost.status)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "priced"


def test_local_models_are_free_unless_a_price_file_prices_them(tmp_path: Path) -> None:
    usage = Usage.build(input_tokens=1_000, output_tokens=100)
    cost = PriceBook().cost(usage, provider="ollama", request_model="llama3", at=AT)
    assert (cost.status, cost.amount, cost.source) == ("free", D(0), "local")
    assert sum(cost.breakdown.values()) == 0
    # a price file wins: $0.10 / $0.20 per 1M for this local model
    path = tmp_path / "p.toml"
    path.write_text('[[models]]\nprovider = "ollama"\nname = "llama3"\ninput = 0.10\noutput = 0.20\n')
    priced = PriceBook(load_overrides(path)).cost(usage, provider="ollama", request_model="llama3", at=AT)
    assert (priced.status, priced.amount) == ("priced", (D(1_000) * D("0.10") + D(100) * D("0.20")) / M)
    # other providers' unknown models stay unpriced
    assert PriceBook().cost(usage, provider="openai", request_model="llama3", at=AT).status == "unpriced"


def _epoch_ns(at: datetime) -> int:
    return int(at.timestamp()) * 10**9


def test_last_instant_of_a_price_change_eve_is_priced_at_that_day() -> None:
    # o3 went from $10 to $2 per 1M input on 2025-06-10; 23:59:59.9999999 the day before is still $10. As
    # a float, that instant's seconds round up to midnight: the engine must not see the next day's price.
    usage = Usage.build(input_tokens=1_000_000)
    book = PriceBook()  # a fresh cache: the first lookup of a day is the one cached for that whole day
    midnight = _epoch_ns(datetime(2025, 6, 10, tzinfo=timezone.utc))

    def at_ns(ns: int) -> Decimal | None:
        return book.cost(usage, provider="openai", request_model="o3", at_ns=ns).amount

    assert at_ns(midnight - 100) == D(10)
    assert at_ns(midnight - 3_600 * 10**9) == D(10)  # the price cached for the eve is the eve's
    assert at_ns(midnight) == D(2)


def test_last_instant_before_a_service_tier_price_starts() -> None:
    # gpt-5-mini's flex price starts on 2026-10-12: the instant before is the standard price.
    usage = Usage.build(input_tokens=1_000_000, output_tokens=1_000_000)
    book = PriceBook()
    midnight = _epoch_ns(datetime(2026, 10, 12, tzinfo=timezone.utc))

    def flex(ns: int) -> Decimal | None:
        return book.cost(usage, provider="openai", request_model="gpt-5-mini", at_ns=ns, service_tier="flex").amount

    assert flex(midnight - 100) == D("2.25")
    assert flex(midnight - 60 * 10**9) == D("2.25")
    assert flex(midnight) == D("1.125")


@pytest.mark.parametrize("tier", [None, "auto", "default"])
def test_standard_service_tiers_are_no_tier(book: PriceBook, tier: str | None) -> None:
    # Every instrumentor passes the tier it saw; the engine alone decides "auto"/"default" mean standard.
    from llmtally.pricing.engine import STANDARD_SERVICE_TIERS

    assert tier is None or tier in STANDARD_SERVICE_TIERS
    usage = Usage.build(input_tokens=1_000_000, output_tokens=1_000_000)
    at = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert cost_of(book, usage, "openai", "gpt-5-mini", at=at, service_tier=tier).amount == D("2.25")
    assert cost_of(book, usage, "openai", "o3", at=at, service_tier=tier).amount \
        == cost_of(book, usage, "openai", "o3", at=at).amount
