"""Benchmark: price resolution + cost calculation.

Reports medians over batches (per call, in microseconds) for:
  * llmtally cached cost (the per-call path: resolved once per model/day, then Decimal arithmetic),
  * llmtally cold resolution (a fresh PriceBook; catalog already loaded),
  * genai-prices' own calc_price on the same usage, for scale.

Run: python bench/bench_pricing.py [--batches 30] [--batch-size 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timezone

from _report import per_call_us, report  # type: ignore[import-not-found]
from llmtally.pricing import PriceBook, bundled_catalog
from llmtally.usage import Usage

AT = datetime(2025, 9, 1, tzinfo=timezone.utc)
CALLS = [
    # (provider, request model, response model, usage)
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18",
     Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024)),
    ("openai", "o3", "o3-2025-04-16", Usage(input_tokens=900, output_tokens=4000, reasoning_tokens=3500)),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929",
     Usage(input_tokens=52000, output_tokens=800, cache_read_tokens=40000, cache_write_tokens=10000)),
    ("gcp.gemini", "gemini-2.5-pro", None, Usage(input_tokens=250000, output_tokens=2000, reasoning_tokens=900)),
]



def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    catalog = bundled_catalog()
    catalog_load_ms = (time.perf_counter() - t0) * 1000

    book = PriceBook(catalog=catalog)
    results: dict[str, float] = {"catalog_load_ms_once": round(catalog_load_ms, 1)}
    for provider, req, resp, usage in CALLS:
        cost = book.cost(usage, provider=provider, request_model=req, response_model=resp, at=AT)
        assert cost.priced, (provider, req)

        def cached(p: str = provider, q: str = req, r: str | None = resp, u: Usage = usage) -> object:
            return book.cost(u, provider=p, request_model=q, response_model=r, at=AT)

        def cold(p: str = provider, q: str = req, r: str | None = resp, u: Usage = usage) -> object:
            return PriceBook(catalog=catalog).cost(u, provider=p, request_model=q, response_model=r, at=AT)

        results[f"cached_cost_us[{req}]"] = round(per_call_us(cached, args.batches, args.batch_size), 3)
        results[f"cold_resolve_us[{req}]"] = round(per_call_us(cold, 5, 200), 2)

    try:
        import genai_prices
        from genai_prices import Usage as GPUsage

        gp_usage = GPUsage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024)

        def genai() -> object:
            return genai_prices.calc_price(gp_usage, "gpt-4o-mini", provider_id="openai",
                                           genai_request_timestamp=AT)

        results["genai_prices_calc_price_us[gpt-4o-mini]"] = round(per_call_us(genai, 10, 500), 2)
    except ImportError:  # pragma: no cover
        pass

    cached_values = [v for k, v in results.items() if k.startswith("cached_cost_us")]
    results["cached_cost_us_median_over_models"] = round(statistics.median(cached_values), 3)
    report(results, args.json, width=55)


if __name__ == "__main__":
    main()
