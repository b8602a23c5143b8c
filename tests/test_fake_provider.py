"""The fake provider itself: routing, scenario controls, recordings, and the command line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from llmtally.testing import FakeProvider, Recording, parse_scenario


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_records_requests_and_renders_usage_in_openai_semantics(fake_provider: FakeProvider) -> None:
    usage = {"input": 1000, "output": 50, "cache_read": 600, "cache_write": 100, "reasoning": 20}
    status, _, body = post(f"{fake_provider.openai_url}/chat/completions",
                           {"model": "gpt-4o-mini@tools", "messages": []}, {"X-Fake-Usage": json.dumps(usage)})
    reply = json.loads(body)
    assert status == 200 and reply["model"] == "gpt-4o-mini"  # flags are not echoed
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    assert reply["usage"]["prompt_tokens"] == 1000  # OpenAI's prompt_tokens include cached tokens
    assert reply["usage"]["prompt_tokens_details"] == {"cached_tokens": 600, "audio_tokens": 0,
                                                       "cache_write_tokens": 100}
    assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] == 20
    assert fake_provider.requests[-1].json["model"] == "gpt-4o-mini@tools"


def test_unknown_route_and_bad_controls(fake_provider: FakeProvider) -> None:
    assert post(f"{fake_provider.url}/v1/nothing", {})[0] == 404
    status, _, body = post(f"{fake_provider.openai_url}/chat/completions", {"model": "m"},
                           {"X-Fake-Scenario": "explode"})
    assert status == 400 and b"unknown fake scenario flags" in body
    status, _, body = post(f"{fake_provider.openai_url}/chat/completions", {"model": "m"},
                           {"X-Fake-Usage": '{"tokens": 1}'})
    assert status == 400


def test_error_scenarios_use_openai_error_bodies(fake_provider: FakeProvider) -> None:
    status, headers, body = post(f"{fake_provider.openai_url}/chat/completions", {"model": "m@error-429"})
    assert status == 429 and headers["retry-after"] == "0"
    assert json.loads(body)["error"]["type"] == "rate_limit_exceeded"


def test_slow_first_byte(fake_provider: FakeProvider) -> None:
    start = time.perf_counter()
    post(f"{fake_provider.openai_url}/embeddings", {"model": "m", "input": "x"}, {"X-Fake-Delay": "0.3"})
    assert time.perf_counter() - start >= 0.3


def test_recording_is_served_verbatim(fake_provider: FakeProvider) -> None:
    fake_provider.add_recording("r1", Recording(status=201, body=b'{"x": 1}', headers={"x-custom": "yes"}))
    status, headers, body = post(f"{fake_provider.url}/anything", {}, {"X-Fake-Replay": "r1"})
    assert (status, headers["x-custom"], body) == (201, "yes", b'{"x": 1}')


@given(text=st.text(max_size=200), chunks=st.integers(min_value=1, max_value=50))
def test_stream_chunks_reassemble_the_text(text: str, chunks: int) -> None:
    scenario = parse_scenario({"X-Fake-Text": text, "X-Fake-Chunks": str(chunks)}, "m")
    pieces = scenario.text_chunks()
    assert "".join(pieces) == text
    assert len(pieces) == max(1, min(chunks, len(text) or 1))


def test_command_line_serves_until_sigterm() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "llmtally.cli", "fake-provider", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line, line
        base = line.split("OpenAI base_url: ")[1].strip(" )\n")
        status, _, body = post(f"{base}/chat/completions", {"model": "gpt-4o-mini", "messages": []})
        assert status == 200 and json.loads(body)["usage"]["prompt_tokens"] == 25
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_command_line_port_in_use_is_one_clear_line(fake_provider: FakeProvider) -> None:
    proc = subprocess.run([sys.executable, "-m", "llmtally.cli", "fake-provider", "--port", str(fake_provider.port)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.startswith("llmtally: error: cannot listen on 127.0.0.1:") and "Traceback" not in proc.stderr
