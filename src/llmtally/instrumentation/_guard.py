"""Fail-open: every step llmtally takes inside a caller's LLM call is guarded by this.

A failure of ours never reaches the caller. It is counted per kind (the processor exports the counts
as ``llmtally.internal.errors``) and logged once per kind, so a systematic bug is visible without
flooding logs on every call.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

logger = logging.getLogger("llmtally")

_lock = threading.Lock()
_errors: Counter[str] = Counter()
_malformed: Counter[str] = Counter()


def report_internal_error(kind: str, exc: BaseException | None = None) -> None:
    """Count (and the first time, log) a failure of llmtally's own code; never raises."""
    try:
        with _lock:
            _errors[kind] += 1
            first = _errors[kind] == 1
        if first:
            logger.warning("llmtally internal error (%s); the call itself is unaffected. Further errors "
                           "of this kind are only counted.", kind, exc_info=exc)
    except Exception:  # pragma: no cover - logging itself failed
        pass


def report_malformed_payload(provider: str) -> None:
    """Count a provider payload we had to correct (clamped usage)."""
    with _lock:
        _malformed[provider] += 1


def internal_error_counts() -> dict[str, int]:
    with _lock:
        return dict(_errors)


def malformed_payload_counts() -> dict[str, int]:
    with _lock:
        return dict(_malformed)


def reset_counts() -> None:
    """For tests."""
    with _lock:
        _errors.clear()
        _malformed.clear()
