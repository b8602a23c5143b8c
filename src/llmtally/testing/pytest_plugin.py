"""pytest plugin (entry point ``pytest11``): the ``fake_provider`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmtally.testing.server import FakeProvider


@pytest.fixture
def fake_provider() -> Iterator[FakeProvider]:
    """A started fake provider on 127.0.0.1 (random port), stopped after the test."""
    with FakeProvider() as fake:
        yield fake
