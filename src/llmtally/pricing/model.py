"""Price data model: what a model costs per leaf, over time, and the Cost of one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal
from types import MappingProxyType

from llmtally import semconv

MTOK = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1M tokens for each kind of token; ``None`` where the source gives no price.

    Missing rates fall back along the billing hierarchy (see :func:`llmtally.pricing.engine`):
    cache read / cache write -> input, 1-hour cache write -> cache write, reasoning -> output,
    audio and image tokens -> the text rate of their direction.
    """

    input: Decimal | None = None
    output: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None  # the default (5-minute) TTL
    cache_write_1h: Decimal | None = None
    reasoning: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    input_image: Decimal | None = None
    output_image: Decimal | None = None

    def with_fallbacks(self) -> Rates:
        """These rates with every missing rate taken from the one it falls back to (None only where the
        fallback is missing too): the one statement of the hierarchy, for the engine and the OTTL."""
        cache_write = self.cache_write if self.cache_write is not None else self.input
        return Rates(
            input=self.input,
            output=self.output,
            cache_read=self.cache_read if self.cache_read is not None else self.input,
            cache_write=cache_write,
            cache_write_1h=self.cache_write_1h if self.cache_write_1h is not None else cache_write,
            reasoning=self.reasoning if self.reasoning is not None else self.output,
            input_audio=self.input_audio if self.input_audio is not None else self.input,
            output_audio=self.output_audio if self.output_audio is not None else self.output,
            input_image=self.input_image if self.input_image is not None else self.input,
            output_image=self.output_image if self.output_image is not None else self.output,
        )

    def merged(self, other: Rates) -> Rates:
        """These rates with every rate ``other`` sets taking precedence."""
        return Rates(**{name: getattr(other, name) if getattr(other, name) is not None
                        else getattr(self, name) for name in RATE_FIELDS})


RATE_FIELDS: tuple[str, ...] = tuple(Rates.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class Tier:
    """Long-context tier: when a call's input tokens exceed ``above_input_tokens``, *all* its tokens
    are priced at these rates (the cliff model providers use)."""

    above_input_tokens: int
    rates: Rates


@dataclass(frozen=True, slots=True)
class PricePeriod:
    """Prices in force from ``start`` (UTC date, inclusive; None = always) until a later period."""

    rates: Rates
    tiers: tuple[Tier, ...] = ()
    start: date | None = None
    daily_window: tuple[time, time] | None = None
    """Only between these UTC times of day (off-peak prices); None = all day."""


@dataclass(frozen=True, slots=True)
class Variant:
    """Rates that replace the period's when the request context matches (e.g. service_tier=flex)."""

    when: tuple[tuple[str, str], ...]
    rates: Rates
    start: date | None = None


@dataclass(frozen=True, slots=True)
class ModelPricing:
    """Everything known about one priced model."""

    provider: str
    """Catalog provider id (genai-prices id) or the provider named in an override file."""
    model: str
    """The entry's canonical model name: what a call is reported as 'priced as'."""
    periods: tuple[PricePeriod, ...]
    """Tried last to first: the last period active at the call's time wins."""
    source: str
    """Where the prices come from: 'genai-prices 0.2.3' or an override file's path."""
    variants: tuple[Variant, ...] = ()
    multiplier: Decimal = Decimal(1)
    """Negotiated-rate multiplier applied to every price (0.8 = 20% discount)."""


@dataclass(slots=True)
class Cost:
    """The cost of one call. Treat as immutable (not frozen only because frozen construction costs
    over a microsecond on the per-call path)."""

    status: str
    """:class:`semconv.CostStatus`: 'priced'; 'unpriced' (no amount: never a silent $0); or 'free' (a
    local model with no price file: amount 0, said explicitly)."""
    amount: Decimal | None = None
    source: str | None = None
    """:class:`semconv.CostSource`: 'provider' when the response carried its price, else 'local'."""
    breakdown: Mapping[str, Decimal] = field(default_factory=lambda: _EMPTY)
    """Per-leaf amounts (keys :data:`semconv.TOKEN_LEAVES`); they sum to ``amount``."""
    priced_as: str | None = None
    """The catalog/override model name the call was priced as."""
    cache_savings: Decimal | None = None
    """What the cache-read tokens would have cost more at the uncached input rate."""
    catalog: str | None = None
    currency: str = semconv.COST_CURRENCY_USD

    @property
    def priced(self) -> bool:
        return self.status != semconv.CostStatus.UNPRICED


_EMPTY: Mapping[str, Decimal] = MappingProxyType({})
UNPRICED = Cost(status=semconv.CostStatus.UNPRICED)
