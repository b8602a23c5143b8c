"""The pricing engine: resolve (provider, model, day, service tier) to per-token prices once, then
price each call's disjoint token leaves in exact Decimal.

Resolution order for a call: the response model, then the request model; for each name, an alias
from the override files, then override prices, then the bundled catalog (with the provider's
multiplier). No match means ``unpriced`` with no amount, never $0. A cost the response itself carried
(OpenRouter ``usage.cost``) wins with source ``provider``.

Missing rates fall back along the billing hierarchy: cache read and cache write to the input rate,
1-hour cache write to the cache-write rate, reasoning to the output rate, audio and image tokens to the
text rate of their direction. A token count that has no rate even then makes the call ``unpriced``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Final, cast

from llmtally import semconv
from llmtally.pricing.catalog import Catalog, bundled_catalog
from llmtally.pricing.matching import candidates, canonical
from llmtally.pricing.model import MTOK, UNPRICED, Cost, ModelPricing, PricePeriod, Rates
from llmtally.pricing.overrides import Overrides, load_overrides
from llmtally.usage import Usage

ENV_PRICE_FILES = "LLMTALLY_PRICE_FILES"
# Providers that run models on the user's own hardware: without a price file their calls are "free"
# (an explicit status with amount 0), never "unpriced" and never a silent $0.
LOCAL_PROVIDERS = frozenset({semconv.Provider.OLLAMA})
LOCAL_CATALOG: Final = "local model (no price file)"
"""The catalog named on a free call of a local provider (here and in the generated OTTL)."""
STANDARD_SERVICE_TIERS: Final = frozenset({"auto", "default"})
"""Service tiers that mean the standard price: :meth:`PriceBook.cost` treats them as no tier at all."""
_ZERO = Decimal(0)
_ONE = Decimal(1)
_MISSING = object()
_CACHE_LIMIT = 4096
_NS_PER_DAY = 86_400 * 10**9
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_L = semconv.TokenLeaf


@dataclass(frozen=True, slots=True)
class PerToken:
    """USD per single token for each kind, after fallbacks and multiplier; None = no price."""

    input: Decimal | None
    output: Decimal | None
    cache_read: Decimal | None
    cache_write: Decimal | None
    cache_write_1h: Decimal | None
    reasoning: Decimal | None
    input_audio: Decimal | None
    output_audio: Decimal | None
    input_image: Decimal | None
    output_image: Decimal | None
    cache_saving: Decimal | None
    """Input minus cache read: what one cache-read token saves (made once, not per call)."""
    core: tuple[Decimal, Decimal, Decimal, Decimal, Decimal, Decimal] | None
    """(input, cache read, cache write, output, reasoning, input minus cache read: what a cache read
    saves) when all five rates are known: the fast path."""

    @classmethod
    def of(cls, rates: Rates, multiplier: Decimal) -> PerToken:
        def per(value: Decimal | None) -> Decimal | None:
            # Exact: a division by 10^6 and a multiplier with few digits stay within Decimal precision.
            return None if value is None else value * multiplier / MTOK

        f = rates.with_fallbacks()
        p_in, p_out, p_cr, p_cw, p_rs = (per(f.input), per(f.output), per(f.cache_read), per(f.cache_write),
                                         per(f.reasoning))
        saving = p_in - p_cr if p_in is not None and p_cr is not None else None
        core = None
        if saving is not None and p_in is not None and p_out is not None and p_cr is not None \
                and p_cw is not None and p_rs is not None:
            core = (p_in, p_cr, p_cw, p_out, p_rs, saving)
        return cls(
            input=p_in,
            output=p_out,
            cache_read=p_cr,
            cache_write=p_cw,
            cache_write_1h=per(f.cache_write_1h),
            reasoning=p_rs,
            input_audio=per(f.input_audio),
            output_audio=per(f.output_audio),
            input_image=per(f.input_image),
            output_image=per(f.output_image),
            cache_saving=saving,
            core=core,
        )


class _NoRate(Exception):
    pass


def _mul(count: int, rate: Decimal | None) -> Decimal:
    if not count:
        return _ZERO
    if rate is None:
        raise _NoRate
    return count * rate


@dataclass(frozen=True, slots=True)
class ResolvedPrice:
    """Prices in force for one model on one day: base rates plus long-context tiers."""

    base: PerToken
    tiers: tuple[tuple[int, PerToken], ...]
    rates: Rates
    """The base rates per 1M tokens (for display: ``llmtally prices``)."""
    tier_rates: tuple[tuple[int, Rates], ...]
    pricing: ModelPricing
    catalog: str

    def price(self, usage: Usage) -> Cost:
        """Cost of ``usage`` at these prices (pure; Decimal-exact)."""
        r = self.base
        if self.tiers:
            n = usage.input_tokens
            for threshold, tier in reversed(self.tiers):
                if n > threshold:
                    r = tier
                    break
        u = usage
        core = r.core
        try:
            if core is not None and u.billed_input_tokens is None and u.billed_output_tokens is None \
                    and not (u.input_audio_tokens or u.input_image_tokens or u.output_audio_tokens
                             or u.output_image_tokens or u.cache_write_1h_tokens):
                # Common path, inlined (no per-leaf calls): every core rate is known.
                p_in, p_cr, p_cw, p_out, p_rs, p_saved = core
                n = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens
                uncached = n * p_in if n else _ZERO
                n = u.cache_read_tokens
                cache_read = n * p_cr if n else _ZERO
                savings = n * p_saved if n else _ZERO
                n = u.cache_write_tokens
                cache_write = n * p_cw if n else _ZERO
                n = u.output_tokens - u.reasoning_tokens
                output = n * p_out if n else _ZERO
                n = u.reasoning_tokens
                reasoning = n * p_rs if n else _ZERO
            elif u.billed_input_tokens is not None or u.billed_output_tokens is not None:
                # Cohere: the billed units are the priced counts, whatever the token counts say.
                uncached = _mul(u.billed_input_tokens or 0, r.input)
                cache_read = cache_write = reasoning = savings = _ZERO
                output = _mul(u.billed_output_tokens or 0, r.output)
            else:
                n_uncached = u.input_tokens - u.cache_read_tokens - u.cache_write_tokens
                audio = min(u.input_audio_tokens, n_uncached)
                image = min(u.input_image_tokens, n_uncached - audio)
                uncached = (_mul(n_uncached - audio - image, r.input) + _mul(audio, r.input_audio)
                            + _mul(image, r.input_image))
                cache_read = _mul(u.cache_read_tokens, r.cache_read)
                savings = (u.cache_read_tokens * r.cache_saving
                           if u.cache_read_tokens and r.cache_saving is not None else _ZERO)
                n_1h = u.cache_write_1h_tokens
                cache_write = (_mul(u.cache_write_tokens - n_1h, r.cache_write)
                               + _mul(n_1h, r.cache_write_1h))
                n_visible = u.output_tokens - u.reasoning_tokens
                o_audio = min(u.output_audio_tokens, n_visible)
                o_image = min(u.output_image_tokens, n_visible - o_audio)
                output = (_mul(n_visible - o_audio - o_image, r.output) + _mul(o_audio, r.output_audio)
                          + _mul(o_image, r.output_image))
                reasoning = _mul(u.reasoning_tokens, r.reasoning)
        except _NoRate:
            return Cost(status=semconv.CostStatus.UNPRICED, priced_as=self.pricing.model,
                        catalog=self.catalog)
        return Cost(
            status=semconv.CostStatus.PRICED,
            amount=uncached + cache_read + cache_write + output + reasoning,
            source=semconv.CostSource.LOCAL,
            breakdown={_L.UNCACHED_INPUT: uncached, _L.CACHE_READ: cache_read, _L.CACHE_WRITE: cache_write,
                       _L.OUTPUT: output, _L.REASONING: reasoning},
            priced_as=self.pricing.model,
            catalog=self.catalog,
            cache_savings=savings,
        )


class PriceBook:
    """Resolves and caches prices; computes the Cost of a call. Thread-safe (idempotent caches)."""

    def __init__(self, overrides: Overrides | None = None, catalog: Catalog | None = None,
                 *, use_catalog: bool = True) -> None:
        self.overrides = overrides if overrides is not None else Overrides()
        self._catalog = catalog
        self._use_catalog = use_catalog
        self._found: dict[tuple[str | None, str], tuple[ModelPricing, Decimal] | None] = {}
        self._resolved: dict[tuple[object, ...], ResolvedPrice | None] = {}

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> PriceBook:
        """A price book with override files loaded now (errors raise :class:`PriceFileError`)."""
        return cls(load_overrides(*paths))

    @classmethod
    def from_env(cls, extra: Sequence[str | Path] = ()) -> PriceBook:
        """Override files named in ``LLMTALLY_PRICE_FILES`` (os.pathsep-separated), then ``extra``."""
        env = os.environ.get(ENV_PRICE_FILES, "")
        paths: list[str | Path] = [p for p in env.split(os.pathsep) if p.strip()]
        return cls.from_files([*paths, *extra])

    @property
    def catalog(self) -> Catalog | None:
        if self._catalog is None and self._use_catalog:
            self._catalog = bundled_catalog()
        return self._catalog

    # --- lookup ---------------------------------------------------------------------------------
    def find(self, provider: str | None, model: str) -> tuple[ModelPricing, Decimal] | None:
        """The pricing entry for a model name and the multiplier that applies; cached."""
        key = (provider, model)
        found = self._found.get(key, _MISSING)
        if found is _MISSING:
            found = self._find_uncached(provider, model)
            if len(self._found) > _CACHE_LIMIT:
                self._found.clear()
            self._found[key] = found
        return cast("tuple[ModelPricing, Decimal] | None", found)

    def _find_uncached(self, provider: str | None, model: str) -> tuple[ModelPricing, Decimal] | None:
        if not model:
            return None
        ov = self.overrides
        alias = ov.aliases.get((provider, canonical(model))) or ov.aliases.get((None, canonical(model)))
        if alias is not None:
            provider, model = alias[0] or provider, alias[1]
        names = candidates(model)
        for name in names:
            entry = ov.models.get((provider, name)) or ov.models.get((None, name))
            if entry is not None:
                return entry, _ONE
        catalog = self.catalog
        if catalog is None:
            return None
        multiplier = ov.multipliers.get(provider, _ONE) if provider is not None else _ONE
        for provider_id in catalog.provider_ids(provider):
            for name in names:
                entry = catalog.find(provider_id, name)
                if entry is not None:
                    return entry, multiplier
        return None

    def resolve(self, provider: str | None, model: str, at: datetime | None = None,
                service_tier: str | None = None) -> ResolvedPrice | None:
        """Prices in force for ``model`` at ``at`` (default: now), or None when unpriced."""
        found = self.find(provider, model)
        if found is None:
            return None
        at = at or datetime.now(timezone.utc)
        return _resolve(found[0], found[1], at, service_tier)

    # --- cost -----------------------------------------------------------------------------------
    def cost(self, usage: Usage, *, provider: str | None, request_model: str | None,
             response_model: str | None = None, at: datetime | None = None,
             service_tier: str | None = None, at_ns: int | None = None) -> Cost:
        """The Cost of one call at ``at`` (or ``at_ns``, epoch nanoseconds: the per-call path has those
        and a datetime costs microseconds to make; default: now). A ``service_tier`` in
        :data:`STANDARD_SERVICE_TIERS` is the standard price, as None. Never raises for any usage or model."""
        if usage.provider_cost is not None:
            return Cost(status=semconv.CostStatus.PRICED, amount=usage.provider_cost,
                        source=semconv.CostSource.PROVIDER, priced_as=response_model or request_model,
                        catalog="provider response")
        if at is not None:
            day = _utc_date(at).toordinal()
        else:
            if at_ns is None:
                at_ns = time.time_ns()
            day = at_ns // _NS_PER_DAY + _EPOCH_ORDINAL
        if service_tier in STANDARD_SERVICE_TIERS:
            service_tier = None  # one cache entry and one price for every spelling of "standard"
        key = (provider, response_model, request_model, day, service_tier)  # prices change by UTC day
        cached = self._resolved.get(key, _MISSING)
        if cached is not _MISSING:
            resolved = cast("ResolvedPrice | None", cached)
        else:
            if at is None:
                at = _from_ns(cast(int, at_ns))
            resolved = None
            time_dependent = False
            order = ((request_model, response_model) if request_model_first(provider)
                     else (response_model, request_model))
            for model in order:
                if model:
                    found = self.find(provider, model)
                    if found is not None:
                        resolved = _resolve(found[0], found[1], at, service_tier)
                        time_dependent = any(p.daily_window for p in found[0].periods)
                        break
            if not time_dependent:  # off-peak prices depend on the time of day: never cached by day
                if len(self._resolved) > _CACHE_LIMIT:
                    self._resolved.clear()
                self._resolved[key] = resolved
        if resolved is None:
            return _FREE if provider in LOCAL_PROVIDERS else UNPRICED
        return resolved.price(usage)


def request_model_first(provider: str | None) -> bool:
    """Which model name prices a call first. The response names the exact model served, so it usually
    wins; on Bedrock the request's id carries what the response lacks: the region or global routing
    that sets the price."""
    return provider == semconv.Provider.AWS_BEDROCK


_FREE = Cost(status=semconv.CostStatus.FREE, amount=_ZERO, source=semconv.CostSource.LOCAL,
             breakdown={leaf: _ZERO for leaf in semconv.TOKEN_LEAVES}, catalog=LOCAL_CATALOG)


def _active(period: PricePeriod, at: datetime) -> bool:
    if period.start is not None and _utc_date(at) < period.start:
        return False
    if period.daily_window is not None:
        start, end = period.daily_window
        now = at.astimezone(timezone.utc).timetz() if at.tzinfo else at.time().replace(tzinfo=timezone.utc)
        start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
        end = end if end.tzinfo else end.replace(tzinfo=timezone.utc)
        return (start <= now < end) if start <= end else (now >= start or now < end)
    return True


def _from_ns(at_ns: int) -> datetime:
    # Integer seconds, then microseconds truncated: a float division (at_ns / 1e9) rounds the last
    # 100 ns of a day into the next one, disagreeing with the integer day key the result is cached by.
    return datetime.fromtimestamp(at_ns // 10**9, tz=timezone.utc).replace(microsecond=at_ns // 1000 % 10**6)


def _utc_date(at: datetime) -> date:
    return at.astimezone(timezone.utc).date() if at.tzinfo else at.date()


def _resolve(pricing: ModelPricing, multiplier: Decimal, at: datetime,
             service_tier: str | None) -> ResolvedPrice:
    period = next((p for p in reversed(pricing.periods) if _active(p, at)), pricing.periods[0])
    rates = period.rates
    tier_rates = [(t.above_input_tokens, t.rates) for t in period.tiers]
    if service_tier is not None and service_tier not in STANDARD_SERVICE_TIERS:
        context = {"service_tier": service_tier}
        for variant in pricing.variants:
            if variant.start is not None and _utc_date(at) < variant.start:
                continue
            if all(context.get(k) == v for k, v in variant.when):
                # A flat variant price replaces that rate at every tier, as in genai-prices.
                rates = rates.merged(variant.rates)
                tier_rates = [(n, r.merged(variant.rates)) for n, r in tier_rates]
                break
    multiplier = multiplier * pricing.multiplier
    catalog = pricing.source if multiplier == _ONE else f"{pricing.source} x{multiplier}"
    return ResolvedPrice(
        base=PerToken.of(rates, multiplier),
        tiers=tuple((n, PerToken.of(r, multiplier)) for n, r in tier_rates),
        rates=rates,
        tier_rates=tuple(tier_rates),
        pricing=pricing,
        catalog=catalog,
    )
