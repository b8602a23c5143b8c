"""A real HTTP server on 127.0.0.1 that speaks LLM providers' wire formats, for tests.

Each wire format (``openai_wire`` now; others slot in the same way) contributes routes: a method, a
path pattern and a handler returning a :class:`JsonReply` or a :class:`StreamReply`. The server core
applies the scenario's generic behaviour (slow first byte, error replies, a cut connection) so every
wire format gets it for free, and records every request for assertions.

    with FakeProvider() as fake:
        client = openai.OpenAI(base_url=fake.openai_url, api_key="test")
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert fake.requests[-1].json["model"] == "gpt-4o-mini"
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from llmtally.testing.scenario import Scenario, parse_scenario


@dataclass
class FakeRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any
    params: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        model = self.params.get("model")
        if model is None and isinstance(self.json, dict):
            value = self.json.get("model")
            model = value if isinstance(value, str) else None
        return model


@dataclass
class JsonReply:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StreamReply:
    frames: Iterable[bytes]
    content_type: str = "text/event-stream; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Reply = JsonReply | StreamReply
Handler = Callable[[FakeRequest, Scenario], Reply]
ErrorBuilder = Callable[[int, str], JsonReply]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    error: ErrorBuilder


@dataclass(frozen=True)
class Recording:
    """A recorded response served verbatim when a request names it in ``X-Fake-Replay``."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    stream: bool = False


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event frame."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class FakeProvider:
    """The fake provider server. Start/stop explicitly or use it as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, routes: Iterable[Route] | None = None) -> None:
        if routes is None:
            from llmtally.testing import anthropic_wire, cohere_wire, gemini_wire, ollama_wire, openai_wire

            routes = [*openai_wire.ROUTES, *anthropic_wire.ROUTES, *gemini_wire.ROUTES, *ollama_wire.ROUTES,
                      *cohere_wire.ROUTES]
            from llmtally.testing import mistral_wire

            # First: Mistral's routes sit under /mistral, which OpenAI's any-prefix routes would also take.
            routes = [*mistral_wire.ROUTES, *routes]
            from llmtally.testing import bedrock_wire

            routes = [*routes, *bedrock_wire.ROUTES]
        self.routes = list(routes)
        self.recordings: dict[str, Recording] = {}
        self.requests: list[FakeRequest] = []
        self.default_headers: dict[str, str] = {}
        """Scenario headers applied to requests that do not send them (e.g. ``X-Fake-Usage`` for an app
        you cannot change)."""
        self._lock = threading.Lock()
        self._server = _QuietServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeProvider:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="llmtally-fake-provider",
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL for ``openai.OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    @property
    def anthropic_url(self) -> str:
        """Base URL for ``anthropic.Anthropic(base_url=...)`` (the SDK appends ``/v1/messages``)."""
        return self.url

    @property
    def gemini_url(self) -> str:
        """Base URL for ``genai.Client(http_options=HttpOptions(base_url=...))`` (Gemini API and Vertex)."""
        return self.url

    @property
    def mistral_url(self) -> str:
        """Server URL for ``Mistral(server_url=...)`` (the SDK appends ``/v1/...``)."""
        return f"{self.url}/mistral"

    @property
    def azure_endpoint(self) -> str:
        """Endpoint for ``openai.AzureOpenAI(azure_endpoint=...)``."""
        return self.url

    # --- recordings -----------------------------------------------------------------------------
    def add_recording(self, name: str, recording: Recording) -> None:
        self.recordings[name] = recording

    def _record(self, request: FakeRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method == method:
                match = route.pattern.fullmatch(path)
                if match:
                    # Path parameters decoded: Bedrock's model ids travel URL-encoded (``%3A``, ARNs' ``%2F``).
                    return route, {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
        return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up mid-stream on purpose (break, close, cancel): not an error here


def _make_handler(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llmtally-fake-provider"
        disable_nagle_algorithm = True  # else header + body writes wait ~40 ms for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                payload = json.loads(body) if body else None
            except ValueError:
                payload = None
            request = FakeRequest(method=method, path=split.path, query=parse_qs(split.query),
                                  headers={k.lower(): v for k, v in self.headers.items()}, body=body, json=payload)
            replay = request.headers.get("x-fake-replay")
            if replay is not None:
                provider._record(request)
                self._replay(provider.recordings.get(replay))
                return
            found = provider.route(method, split.path)
            if found is None:
                provider._record(request)
                self._send_json(JsonReply({"error": {"message": f"no fake route for {method} {split.path}"}},
                                          status=404))
                return
            route, request.params = found
            provider._record(request)
            try:
                headers = {**{k.lower(): v for k, v in provider.default_headers.items()}, **request.headers}
                scenario = parse_scenario(headers, request.model)
            except ValueError as exc:
                self._send_json(route.error(400, str(exc)))
                return
            if scenario.delay:
                time.sleep(scenario.delay)
            status = scenario.error_status
            if status is not None:
                error = route.error(status, f"fake {status} error")
                if status == 429:
                    error.headers.setdefault("retry-after", "0")
                self._send_json(error)
                return
            reply = route.handler(request, scenario)
            if isinstance(reply, JsonReply):
                self._send_json(reply)
            else:
                self._send_stream(reply, cut=scenario.has("cut"), chunk_delay=scenario.chunk_delay)

        def _send_json(self, reply: JsonReply) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_stream(self, reply: StreamReply, cut: bool, chunk_delay: float = 0.0) -> None:
            self.send_response(200)
            self.send_header("content-type", reply.content_type)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("cache-control", "no-cache")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            frames = list(reply.frames)
            if cut:
                frames = frames[: max(1, len(frames) // 2)]
            for i, frame in enumerate(frames):
                if i and chunk_delay:
                    time.sleep(chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
            if cut:
                # Drop the connection without the terminating chunk: the client sees a broken stream.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _replay(self, recording: Recording | None) -> None:
            if recording is None:
                self._send_json(JsonReply({"error": {"message": "unknown recording"}}, status=404))
                return
            skip = {"content-length", "transfer-encoding", "content-encoding", "connection"}
            self.send_response(recording.status)
            for key, value in recording.headers.items():
                if key.lower() not in skip:
                    self.send_header(key, value)
            self.send_header("content-length", str(len(recording.body)))
            self.end_headers()
            self.wfile.write(recording.body)

    return Handler
