"""Price lookup and exact Decimal cost: the bundled genai-prices catalog plus user override files."""

from llmtally.pricing.catalog import Catalog, bundled_catalog
from llmtally.pricing.engine import PriceBook, ResolvedPrice
from llmtally.pricing.model import UNPRICED, Cost, ModelPricing, PricePeriod, Rates, Tier
from llmtally.pricing.overrides import Overrides, PriceFileError, load_overrides

__all__ = [
    "UNPRICED",
    "Catalog",
    "Cost",
    "ModelPricing",
    "Overrides",
    "PriceBook",
    "PriceFileError",
    "PricePeriod",
    "Rates",
    "ResolvedPrice",
    "Tier",
    "bundled_catalog",
    "load_overrides",
]
