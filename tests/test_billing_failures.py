"""Which failed calls may still have been billed (estimated) and which were refused (an exact zero)."""

from __future__ import annotations

import asyncio

import httpx
import httpx2
import pytest

from llmtally.instrumentation.call import maybe_billed


def chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as exc:
        return exc


class StatusError(Exception):
    """An SDK's HTTP status error: the provider answered, and refused."""

    status_code = 429


@pytest.mark.parametrize(("error", "billed"), [
    (httpx.ReadTimeout("t"), True),
    (httpx2.RemoteProtocolError("dropped"), True),
    (asyncio.CancelledError(), True),
    (chained(RuntimeError("sdk wrapper"), httpx2.ReadError("reset")), True),
    (httpx.ConnectError("refused"), False),
    (httpx2.ConnectTimeout("t"), False),
    (chained(RuntimeError("sdk wrapper"), httpx2.ConnectError("refused")), False),
    (chained(StatusError("429"), httpx2.ReadTimeout("t")), False),  # the status wins: an answer came back
    (ValueError("bad argument"), False),
])
def test_maybe_billed(error: BaseException, billed: bool) -> None:
    assert maybe_billed(error) is billed


def test_a_2xx_the_sdk_could_not_parse_may_be_billed() -> None:
    """openai's APIResponseValidationError carries the 200 it failed to validate: the model ran."""
    openai = pytest.importorskip("openai")
    response = httpx2.Response(200, request=httpx2.Request("POST", "https://api.openai.com/v1/chat/completions"))
    assert maybe_billed(openai.APIResponseValidationError(response, body={"id": 1})) is True
    assert maybe_billed(openai.RateLimitError("slow down", response=httpx2.Response(
        429, request=response.request), body=None)) is False


def test_botocore_read_timeout_is_maybe_billed() -> None:
    botocore = pytest.importorskip("botocore.exceptions")
    assert maybe_billed(botocore.ReadTimeoutError(endpoint_url="http://127.0.0.1")) is True
    assert maybe_billed(botocore.ConnectTimeoutError(endpoint_url="http://127.0.0.1")) is False


def test_a_cyclic_chain_ends() -> None:
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__context__, b.__context__ = b, a
    assert maybe_billed(a) is False
