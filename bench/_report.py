"""Shared by the benchmarks: batch timing and result printing."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], batches: int, size: int) -> float:
    """Median over batches of the microseconds one call of ``fn`` takes."""
    samples = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(size):
            fn()
        samples.append((time.perf_counter_ns() - start) / size / 1000)
    return statistics.median(samples)


def report(results: dict[str, float], as_json: bool, width: int = 55) -> None:
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:{width}} {value}")
