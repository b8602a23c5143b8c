"""Shared test configuration: where the real recorded provider payloads live."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def real_payloads_path() -> Path:
    """``shared/fixtures/real-payloads.jsonl``: beside the checkout (as CI lays it out), else the
    workplace's shared folder; ``LLMTALLY_REAL_PAYLOADS`` overrides both."""
    override = os.environ.get("LLMTALLY_REAL_PAYLOADS")
    if override:
        return Path(override)
    candidates = [_REPO.parent / "shared" / "fixtures" / "real-payloads.jsonl",
                  Path("/work/shared/fixtures/real-payloads.jsonl")]
    return next((p for p in candidates if p.is_file()), candidates[0])
