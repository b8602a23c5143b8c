"""Attribution: who and what an LLM call is for (user, tenant, session, conversation, feature).

Carried in OpenTelemetry *baggage*, so it nests (inner values merge over outer ones), follows
``async`` tasks (contextvars), and crosses service boundaries with the W3C ``baggage`` header when the
baggage propagator is on (the SDK default ``OTEL_PROPAGATORS=tracecontext,baggage``)::

    with llmtally.attributes(user_id="u-42", tenant_id="acme", feature="search"):
        client.chat.completions.create(...)

    @llmtally.attributes(feature="summarise")
    async def summarise(text): ...

Every llmtally span and usage record of a call made inside gets the attributes. Metric labels take
only the keys you allow-list (``LLMTALLY_METRIC_ATTRIBUTES``), because user ids as labels explode.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from llmtally import semconv as sc

F = TypeVar("F", bound=Callable[..., Any])

_KNOWN = {
    "user_id": sc.USER_ID,
    "tenant_id": sc.LLMTALLY_TENANT_ID,
    "session_id": sc.SESSION_ID,
    "conversation_id": sc.GEN_AI_CONVERSATION_ID,
    "feature": sc.LLMTALLY_FEATURE,
}
ATTRIBUTION_KEYS = frozenset(_KNOWN.values())
_EXTRA_PREFIX = "llmtally."


def _key(name: str) -> str:
    if name in _KNOWN:
        return _KNOWN[name]
    return name if "." in name else _EXTRA_PREFIX + name


class attributes:
    """Context manager and decorator (sync or async) that attributes the LLM calls inside it."""

    def __init__(self, *, user_id: str | None = None, tenant_id: str | None = None,
                 session_id: str | None = None, conversation_id: str | None = None,
                 feature: str | None = None, **extra: str | int | float | bool) -> None:
        given: dict[str, Any] = {"user_id": user_id, "tenant_id": tenant_id, "session_id": session_id,
                                 "conversation_id": conversation_id, "feature": feature, **extra}
        self.values = {_key(k): str(v) for k, v in given.items() if v is not None}
        self._tokens: list[object] = []

    def __enter__(self) -> attributes:
        ctx = otel_context.get_current()
        for key, value in self.values.items():
            ctx = baggage.set_baggage(key, value, ctx)
        self._tokens.append(otel_context.attach(ctx))
        return self

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with attributes._copy(self):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with attributes._copy(self):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    @staticmethod
    def _copy(source: attributes) -> attributes:
        # A fresh instance per invocation: concurrent calls of a decorated function keep their own tokens.
        clone = attributes.__new__(attributes)
        clone.values = source.values
        clone._tokens = []
        return clone


def current_attributes(context: Context | None = None) -> dict[str, str]:
    """Attribution in effect here (or in ``context``): the known keys and every ``llmtally.``-prefixed
    baggage entry."""
    found: dict[str, str] = {}
    for key, value in baggage.get_all(context).items():
        if key in ATTRIBUTION_KEYS or key.startswith(_EXTRA_PREFIX):
            found[key] = str(value)
    return found
