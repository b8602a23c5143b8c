"""Adapter from genai-prices' bundled data (offline, imported lazily) to llmtally's price model.

Only token prices are taken (input, output, cache read/write, 1h cache write, reasoning, audio and
image tokens); per-request fees such as web searches have no usage counts here and are left out.
Variants (service tiers) are taken when their prices are flat; tiered variant prices (batch) are not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from typing import Any

from llmtally import semconv
from llmtally.pricing.matching import canonical
from llmtally.pricing.model import ModelPricing, PricePeriod, Rates, Tier, Variant

# genai-prices price key -> Rates field.
_PRICE_KEYS = {
    "input_mtok": "input",
    "output_mtok": "output",
    "cache_read_mtok": "cache_read",
    "cache_write_mtok": "cache_write",
    "cache_write_1h_mtok": "cache_write_1h",
    "output_reasoning_mtok": "reasoning",
    "input_audio_mtok": "input_audio",
    "output_audio_mtok": "output_audio",
    "input_image_mtok": "input_image",
    "output_image_mtok": "output_image",
}

# gen_ai.provider.name -> genai-prices provider ids to search, in order.
PROVIDER_IDS: dict[str, tuple[str, ...]] = {
    semconv.Provider.OPENAI: ("openai",),
    semconv.Provider.AZURE_OPENAI: ("azure", "openai"),
    semconv.Provider.AZURE_INFERENCE: ("azure", "openai"),
    semconv.Provider.ANTHROPIC: ("anthropic",),
    semconv.Provider.AWS_BEDROCK: ("aws", "anthropic"),
    semconv.Provider.GCP_GEMINI: ("google",),
    semconv.Provider.GCP_VERTEX_AI: ("google", "anthropic"),
    semconv.Provider.GCP_GEN_AI: ("google",),
    semconv.Provider.MISTRAL_AI: ("mistral",),
    semconv.Provider.COHERE: ("cohere",),
    semconv.Provider.GROQ: ("groq",),
    semconv.Provider.DEEPSEEK: ("deepseek",),
    semconv.Provider.X_AI: ("x-ai",),
    semconv.Provider.PERPLEXITY: ("perplexity",),
    semconv.Provider.OPENROUTER: ("openrouter",),
    semconv.Provider.TOGETHER: ("together",),
    semconv.Provider.FIREWORKS: ("fireworks",),
}


def catalog_version() -> str:
    try:
        return f"genai-prices {_dist_version('genai-prices')}"
    except PackageNotFoundError:  # pragma: no cover - a dependency
        return "genai-prices"


@dataclass(frozen=True, slots=True)
class Catalog:
    """Name index over a list of priced models, per catalog provider."""

    version: str
    index: dict[str, dict[str, ModelPricing]]
    """provider id -> canonical name -> pricing."""

    def find(self, provider_id: str, name: str) -> ModelPricing | None:
        models = self.index.get(provider_id)
        return None if models is None else models.get(name)

    def provider_ids(self, provider: str | None) -> tuple[str, ...]:
        if provider is None:
            return ()
        ids = PROVIDER_IDS.get(provider)
        if ids is not None:
            return ids
        return (provider,) if provider in self.index else ()

    def __len__(self) -> int:
        return sum(len({id(m) for m in models.values()}) for models in self.index.values())


_bundled: Catalog | None = None
_bundled_lock = threading.Lock()


def bundled_catalog() -> Catalog:
    """genai-prices' bundled snapshot, converted once (thread-safe). Never touches the network."""
    global _bundled
    if _bundled is None:
        with _bundled_lock:
            if _bundled is None:
                from genai_prices.data import providers  # ~0.25 s the first time: deferred until needed

                _bundled = build_catalog(providers, catalog_version())
    return _bundled


def build_catalog(providers: Iterable[Any], version: str) -> Catalog:
    index: dict[str, dict[str, ModelPricing]] = {}
    for provider in providers:
        names: dict[str, ModelPricing] = {}
        for model in provider.models:
            pricing = _convert_model(provider.id, model, version)
            if pricing is None:
                continue
            for name in _names(model):
                names.setdefault(canonical(name), pricing)  # first model wins, as in genai-prices
        index[provider.id] = names
    # One step of fallback, as genai-prices does (Azure serves OpenAI's models, Google Anthropic's).
    for provider in providers:
        for fallback in getattr(provider, "fallback_model_providers", None) or ():
            own = index.get(provider.id, {})
            for name, pricing in index.get(fallback, {}).items():
                own.setdefault(name, pricing)
    return Catalog(version=version, index=index)


def _names(model: Any) -> Iterator[str]:
    """The model id and every literal string of its match clauses, each taken as an exact name.

    ``starts_with``/``contains``/``ends_with`` strings are used as whole names, never as patterns;
    regex clauses are ignored. :mod:`llmtally.pricing.matching` adds the documented suffix rules.
    """
    yield model.id
    yield from _clause_names(model.match)


def _clause_names(clause: Any) -> Iterator[str]:
    for attr in ("equals", "starts_with", "ends_with", "contains"):
        value = getattr(clause, attr, None)
        if isinstance(value, str):
            yield value.rstrip("-.")
    for attr in ("or_", "and_"):
        for sub in getattr(clause, attr, None) or ():
            yield from _clause_names(sub)


def _convert_model(provider_id: str, model: Any, version: str) -> ModelPricing | None:
    raw = model.prices
    conditional = raw if isinstance(raw, list) else [None]
    periods: list[PricePeriod] = []
    for cond in conditional:
        prices = raw if cond is None else cond.prices
        rates, tiers = _convert_prices(prices)
        if rates is None:
            return None
        constraint = None if cond is None else cond.constraint
        start = getattr(constraint, "start_date", None)
        window: tuple[time, time] | None = None
        if constraint is not None and hasattr(constraint, "start_time"):
            window = (constraint.start_time, constraint.end_time)
        periods.append(PricePeriod(rates=rates, tiers=tiers, start=start, daily_window=window))
    variants: list[Variant] = []
    for variant in getattr(model, "price_variants", None) or ():
        vrates, vtiers = _convert_prices(variant.prices, partial=True)
        if vrates is None or vtiers:
            continue
        variants.append(Variant(
            when=tuple(sorted(variant.when.items())),
            rates=vrates,
            start=getattr(variant.constraint, "start_date", None),
        ))
    return ModelPricing(
        provider=provider_id, model=model.id, periods=tuple(periods), source=version,
        variants=tuple(variants),
    )


def _convert_prices(prices: Any, partial: bool = False) -> tuple[Rates | None, tuple[Tier, ...]]:
    flat: dict[str, Decimal] = {}
    tiered: dict[str, Any] = {}
    for key, field in _PRICE_KEYS.items():
        value = getattr(prices, key, None)
        if value is None:
            continue
        if isinstance(value, Decimal):
            flat[field] = value
        else:  # TieredPrices(base, tiers=[Tier(start, price)])
            flat[field] = value.base
            tiered[field] = value
    if not flat:
        return (Rates(), ()) if partial else (None, ())
    starts = sorted({tier.start for value in tiered.values() for tier in value.tiers})
    tiers = []
    for start in starts:
        at_tier = dict(flat)
        for field, value in tiered.items():
            applicable = value.base
            for tier in value.tiers:  # sorted ascending by genai-prices
                if tier.start <= start:
                    applicable = tier.price
            at_tier[field] = applicable
        tiers.append(Tier(above_input_tokens=start, rates=Rates(**at_tier)))
    return Rates(**flat), tuple(tiers)
