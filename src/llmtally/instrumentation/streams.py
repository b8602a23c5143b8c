"""Transparent proxies for SDK streams and raw responses, shared by every provider's instrumentor.

A proxy behaves exactly like the object it wraps (``isinstance``, attributes, ``with``, ``close``,
``.response``): only iteration and the end of life are observed. The call is finished exactly once, on
whichever comes first: exhaustion, an error from the stream, ``close()``, leaving a ``with`` block, or
garbage collection (an early ``break`` without ``with``). No OpenTelemetry context is attached while
the caller holds the stream, so no context token ever crosses a ``yield``.

Lazy streams (google-genai, ollama, cohere's public streams, litellm's ``make_call``) send their request on
the first pull: ``activate_first=True`` makes the call current during that one pull (attached and detached
in the same frame), so HTTP spans and inner instrumentations nest under it; later pulls are not touched.

Provider specifics live in an *accumulator*: ``on_item(item) -> bool`` sees every item (return False
to hide an item the caller did not ask for, e.g. an injected usage-only chunk) and ``usage()`` gives
the final usage, or None to have it estimated from the counted output.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, Protocol

import wrapt

from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation.call import Call
from llmtally.usage import Usage


class Accumulator(Protocol):
    call: Call

    def on_item(self, item: Any) -> bool: ...

    def usage(self) -> Usage | None: ...


class UsageAccumulator:
    """Base of accumulators whose stream reports its usage in one event: ``on_item`` stores it in
    ``_usage``, the end of the stream reads it back (None: estimate from the counted output)."""

    __slots__ = ("_usage", "call")

    def __init__(self, call: Call) -> None:
        self.call = call
        self._usage: Usage | None = None

    def usage(self) -> Usage | None:
        return self._usage


def _finish(acc: Accumulator, error: BaseException | None) -> None:
    try:
        usage = acc.usage()
    except Exception as exc:
        report_internal_error("stream.usage", exc)
        usage = None
    # An error before the first item: lazy SDK streams (google-genai) send the request on first
    # iteration, so this is a rejected request, nothing was produced: an exact zero, not an estimate.
    rejected = error is not None and acc.call.ttfc is None and usage is None
    acc.call.finish(usage, error, rejected=rejected)


_END = object()  # "exhausted", from next()/anext() with a default


class _TracedBase(wrapt.ObjectProxy[Any]):
    """What both stream proxies share: the accumulator, and ending the call exactly once."""

    def __init__(self, wrapped: Any, accumulator: Accumulator, *, activate_first: bool = False) -> None:
        super().__init__(wrapped)
        self._self_acc = accumulator
        self._self_done = False
        self._self_activate = activate_first  # cleared by the first pull, whichever path makes it

    def _self_observe(self, item: Any) -> bool:
        """Show one item to the accumulator (guarded); whether the caller gets it. The iterator paths
        (``for``, ``async for``) inline this: a method call per chunk is measurable there."""
        acc = self._self_acc
        if acc.call.ttfc is None:
            acc.call.first_chunk()
        try:
            return acc.on_item(item)
        except Exception as exc:
            report_internal_error("stream.item", exc)
            return True

    def _self_end(self, error: BaseException | None) -> None:
        if not self._self_done:
            self._self_done = True
            _finish(self._self_acc, error)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self._self_end(None)


class TracedStream(_TracedBase):
    """Proxy of a synchronous SDK stream (openai ``Stream``, anthropic ``Stream``, ...)."""

    def __iter__(self) -> Iterator[Any]:
        # A generator: resuming it per chunk is cheaper than a Python-level __next__ through the proxy.
        return self._self_iterate()

    def _self_iterate(self) -> Iterator[Any]:
        acc = self._self_acc
        on_item, call = acc.on_item, acc.call
        try:
            items: Any = self.__wrapped__
            if self._self_activate:
                items, first = self._self_pull_first()
                if first is _END:
                    self._self_end(None)
                    return
                if self._self_observe(first):
                    yield first
            for item in items:  # the same iterator: the loop below is the plain path, first pull or not
                if call.ttfc is None:
                    call.first_chunk()
                try:
                    keep = on_item(item)
                except Exception as exc:
                    report_internal_error("stream.item", exc)
                    keep = True
                if keep:
                    yield item
        except GeneratorExit:
            raise  # the caller stopped this loop (break); the stream itself may be resumed later
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_end(None)

    def _self_pull_first(self) -> tuple[Iterator[Any], Any]:
        """(the wrapped iterator, its first item or _END), pulled with the call current."""
        self._self_activate = False
        call = self._self_acc.call
        token = call.activate()
        try:
            iterator = iter(self.__wrapped__)
            return iterator, next(iterator, _END)
        finally:
            call.deactivate(token)

    def __next__(self) -> Any:
        if self._self_activate:
            self._self_activate = False
            call = self._self_acc.call
            token = call.activate()
            try:
                return self.__next__()
            finally:
                call.deactivate(token)
        wrapped = self.__wrapped__
        # Looked up on the type, as next() does; one lookup, the check only when it is missing.
        pull: Any = getattr(type(wrapped), "__next__", None)
        if pull is None:  # iterable only (botocore's EventStream)
            next(wrapped)  # raises the interpreter's own TypeError, as without llmtally
        while True:
            try:
                item = pull(wrapped)
            except StopIteration:
                self._self_end(None)
                raise
            except BaseException as exc:
                self._self_end(exc)
                raise
            if self._self_observe(item):
                return item

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end(None)

    def __enter__(self) -> TracedStream:
        if not hasattr(type(self.__wrapped__), "__enter__"):  # not a context manager: fail as without us
            with self.__wrapped__:  # the interpreter's own TypeError, worded as this Python words it
                pass
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_end(None)


class TracedAsyncStream(_TracedBase):
    """Proxy of an asynchronous SDK stream (openai ``AsyncStream``, ...)."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._self_aiterate()

    async def _self_aiterate(self) -> AsyncIterator[Any]:
        acc = self._self_acc
        on_item, call = acc.on_item, acc.call
        try:
            items: Any = self.__wrapped__
            if self._self_activate:
                items, first = await self._self_apull_first()
                if first is _END:
                    self._self_end(None)
                    return
                if self._self_observe(first):
                    yield first
            async for item in items:  # as in TracedStream._self_iterate
                if call.ttfc is None:
                    call.first_chunk()
                try:
                    keep = on_item(item)
                except Exception as exc:
                    report_internal_error("stream.item", exc)
                    keep = True
                if keep:
                    yield item
        except GeneratorExit:
            raise
        except BaseException as exc:  # CancelledError included: the task was cancelled mid-stream
            self._self_end(exc)
            raise
        self._self_end(None)

    async def _self_apull_first(self) -> tuple[AsyncIterator[Any], Any]:
        """As :meth:`TracedStream._self_pull_first` (the context is task-local: awaiting with it is fine)."""
        self._self_activate = False
        call = self._self_acc.call
        token = call.activate()
        try:
            iterator = aiter(self.__wrapped__)
            return iterator, await anext(iterator, _END)
        finally:
            call.deactivate(token)

    async def __anext__(self) -> Any:
        if self._self_activate:
            self._self_activate = False
            call = self._self_acc.call
            token = call.activate()
            try:
                return await self.__anext__()
            finally:
                call.deactivate(token)
        while True:
            try:
                item = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                self._self_end(None)
                raise
            except BaseException as exc:  # CancelledError included: the task was cancelled mid-stream
                self._self_end(exc)
                raise
            if self._self_observe(item):
                return item

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_end(None)

    async def aclose(self) -> Any:
        try:
            closer = getattr(self.__wrapped__, "aclose", None) or self.__wrapped__.close
            return await closer()
        finally:
            self._self_end(None)

    async def __aenter__(self) -> TracedAsyncStream:
        if not hasattr(type(self.__wrapped__), "__aenter__"):  # as __enter__ above
            async with self.__wrapped__:
                pass
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_end(None)


# Proxies of lazy streams: their first pull sends the request, with the call current.
lazy_stream = partial(TracedStream, activate_first=True)
lazy_async_stream = partial(TracedAsyncStream, activate_first=True)


def call_lazy(accumulator: Accumulator, wrapped: Callable[..., Any], args: tuple[Any, ...],
              kwargs: dict[str, Any], proxy: Callable[[Any, Any], Any] = lazy_stream) -> Any:
    """``proxy(wrapped(*args, **kwargs), accumulator)`` for an SDK method whose result sends the request only
    once used (a lazy stream, a context manager): nothing is sent here, so no span is made current. The call
    itself can still fail (bad arguments): a rejected request."""
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        accumulator.call.finish(None, exc, rejected=True)
        raise
    return proxy(result, accumulator)


class TracedResponse(wrapt.ObjectProxy[Any]):
    """Proxy of a raw/streaming HTTP response object (``with_raw_response``, ``with_streaming_response``).

    ``on_parsed(result)`` turns what ``parse()`` returned into what the caller gets: a stream is wrapped,
    a response object finishes the call. ``on_close()`` finishes a call whose caller never parsed (read
    the body as text/JSON/bytes, or just looked at the headers).
    """

    def __init__(self, wrapped: Any, on_parsed: Callable[[Any], Any], on_close: Callable[[], None]) -> None:
        super().__init__(wrapped)
        self._self_on_parsed = on_parsed
        self._self_on_close = on_close
        self._self_parsed: dict[Any, Any] = {}

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        result = self.__wrapped__.parse(*args, **kwargs)
        return self._self_wrap(kwargs.get("to"), result)

    def _self_wrap(self, key: Any, result: Any) -> Any:
        try:
            if key in self._self_parsed and self._self_parsed[key][0] is result:
                return self._self_parsed[key][1]  # the SDK caches parse(); so do we
            wrapped = self._self_on_parsed(result)
            self._self_parsed[key] = (result, wrapped)
            return wrapped
        except Exception as exc:
            report_internal_error("response.parse", exc)
            return result

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_close()

    def _self_close(self) -> None:
        try:
            self._self_on_close()
        except Exception as exc:
            report_internal_error("response.close", exc)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self._self_parsed:
                # parse() handed the call over: a traced stream that may outlive this object (LiteLLM
                # keeps only `raw.parse()`), or a response that already finished it.
                return
            self._self_close()


class TracedAsyncResponse(TracedResponse):
    """:class:`TracedResponse` for async response objects whose ``parse``/``close`` are coroutines."""

    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.__wrapped__.parse(*args, **kwargs)
        return self._self_wrap(kwargs.get("to"), result)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_close()
