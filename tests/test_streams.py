"""The shared stream proxies on plain (async) iterators: ``activate_first`` makes the call current during the
first pull only, and ``next()`` passes the stream's own errors through."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from llmtally.instrumentation.call import _ACTIVE, Call
from llmtally.instrumentation.streams import TracedAsyncStream, TracedStream, UsageAccumulator, call_lazy
from llmtally.usage import Usage
from tests.conftest import TRACER_PROVIDER, attrs, only_span


class _Acc(UsageAccumulator):
    __slots__ = ()

    def on_item(self, item: Any) -> bool:
        self._usage = Usage.build(input_tokens=1, output_tokens=item)
        return True


def _call() -> Call:
    return Call(TRACER_PROVIDER.get_tracer("test"), provider="openai", operation="chat", request_model="m",
                server_address=None, server_port=None, streaming=True)


def _ours(call: Call) -> bool:
    return trace.get_current_span() is call.span and _ACTIVE.get() is call


def _items(call: Call, seen: list[bool], n: int = 3) -> Iterator[int]:
    for i in range(n):
        seen.append(_ours(call))  # what the transport would see while this item is pulled
        yield i + 1


async def _aitems(call: Call, seen: list[bool], n: int = 3) -> AsyncIterator[int]:
    for i in range(n):
        seen.append(_ours(call))
        await asyncio.sleep(0)
        yield i + 1


@pytest.mark.parametrize("how", ["for", "next"])
def test_first_pull_runs_with_the_call_current(spans: InMemorySpanExporter, how: str) -> None:
    call, seen, between = _call(), [], []
    stream = TracedStream(_items(call, seen), _Acc(call), activate_first=True)
    if how == "for":
        for _ in stream:
            between.append(_ours(call))
    else:
        while True:
            try:
                next(stream)
            except StopIteration:
                break
            between.append(_ours(call))
    assert seen == [True, False, False] and between == [False, False, False]
    assert trace.get_current_span() is trace.INVALID_SPAN and _ACTIVE.get() is None
    assert attrs(only_span(spans))["gen_ai.usage.output_tokens"] == 3


def test_next_then_for_activates_once(spans: InMemorySpanExporter) -> None:
    call, seen = _call(), []
    stream = TracedStream(_items(call, seen), _Acc(call), activate_first=True)
    assert next(stream) == 1
    assert list(stream) == [2, 3]
    assert seen == [True, False, False]


def test_without_activate_first_no_pull_is_activated(spans: InMemorySpanExporter) -> None:
    call, seen = _call(), []
    assert list(TracedStream(_items(call, seen), _Acc(call))) == [1, 2, 3]
    assert seen == [False, False, False]


@pytest.mark.parametrize("how", ["for", "next"])
def test_first_pull_failing_is_rejected_and_restores_the_context(spans: InMemorySpanExporter, how: str) -> None:
    call = _call()

    def refused() -> Iterator[int]:
        assert _ours(call)
        raise ConnectionRefusedError("no")
        yield 1  # pragma: no cover

    stream = TracedStream(refused(), _Acc(call), activate_first=True)
    with pytest.raises(ConnectionRefusedError):
        list(stream) if how == "for" else next(stream)
    assert trace.get_current_span() is trace.INVALID_SPAN and _ACTIVE.get() is None
    span = only_span(spans)
    assert span.status.status_code is StatusCode.ERROR
    assert (attrs(span)["gen_ai.usage.output_tokens"], attrs(span)["llmtally.usage.estimated"]) == (0, False)


def test_empty_lazy_stream_ends_the_call(spans: InMemorySpanExporter) -> None:
    call = _call()
    assert list(TracedStream(iter(()), _Acc(call), activate_first=True)) == []
    assert only_span(spans).status.status_code is StatusCode.UNSET


def test_break_after_the_first_item_holds_no_context(spans: InMemorySpanExporter) -> None:
    call, seen = _call(), []
    stream = TracedStream(_items(call, seen), _Acc(call), activate_first=True)
    for _ in stream:
        break
    assert trace.get_current_span() is trace.INVALID_SPAN and _ACTIVE.get() is None
    assert list(stream) == [2, 3] and seen == [True, False, False]


@pytest.mark.parametrize("how", ["async for", "anext"])
def test_async_first_pull_runs_with_the_call_current(spans: InMemorySpanExporter, how: str) -> None:
    async def run() -> tuple[list[bool], list[bool]]:
        call, seen, between = _call(), [], []
        stream = TracedAsyncStream(_aitems(call, seen), _Acc(call), activate_first=True)
        if how == "async for":
            async for _ in stream:
                between.append(_ours(call))
        else:
            while True:
                try:
                    await stream.__anext__()
                except StopAsyncIteration:
                    break
                between.append(_ours(call))
        assert trace.get_current_span() is trace.INVALID_SPAN and _ACTIVE.get() is None
        return seen, between

    assert asyncio.run(run()) == ([True, False, False], [False, False, False])
    assert attrs(only_span(spans))["gen_ai.usage.output_tokens"] == 3


def test_attribute_error_inside_the_streams_next_passes_through(spans: InMemorySpanExporter) -> None:
    class Broken:
        def __iter__(self) -> Broken:
            return self

        def __next__(self) -> int:
            raise AttributeError("the SDK's own bug")

    call = _call()
    with pytest.raises(AttributeError, match="the SDK's own bug"):
        next(TracedStream(Broken(), _Acc(call)))
    assert attrs(only_span(spans))["error.type"] == "AttributeError"


def test_call_lazy_failing_call_is_rejected(spans: InMemorySpanExporter) -> None:
    def bad(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("bad argument")

    with pytest.raises(TypeError):
        call_lazy(_Acc(_call()), bad, (1,), {"a": 2})
    span = only_span(spans)
    assert span.status.status_code is StatusCode.ERROR and attrs(span)["llmtally.usage.estimated"] is False


def test_call_lazy_wraps_with_activate_first(spans: InMemorySpanExporter) -> None:
    call, seen = _call(), []
    stream = call_lazy(_Acc(call), _items, (call, seen), {"n": 2})
    assert isinstance(stream, TracedStream) and list(stream) == [1, 2] and seen == [True, False]
