"""A real Prometheus server and promtool for tests: find the binaries, run a server on 127.0.0.1 in a
temporary directory, query its HTTP API, send it remote-write requests, and turn the shipped dashboards
into the PromQL Grafana would send.

Binaries missing: the test skips with the reason locally and FAILS under CI (CI=true), where .ci/run
installs Debian's ``prometheus`` package.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "dashboards"
RULES = DASHBOARDS / "alerts" / "llmtally.rules.yml"


def binary(name: str) -> str:
    """Path of ``name`` (prometheus, promtool); skip locally, fail under CI, when it is missing."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"`{name}` not found: install Debian's prometheus package (apt-get install prometheus), as .ci/run does"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        return list(data["result"]) if data["resultType"] in ("vector", "matrix") else [data["result"]]

    def query_range(self, expr: str, seconds: float, step: str = "1s") -> list[dict[str, Any]]:
        now = time.time()
        return list(self.get("/api/v1/query_range", query=expr, start=str(now - seconds), end=str(now),
                             step=step)["result"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/alerts")["alerts"])

    def remote_write(self, series: Sequence[tuple[Mapping[str, str], float, int]]) -> None:
        """One remote-write 1.0 request: (labels incl. __name__, value, timestamp ms) per sample."""
        body = snappy_block(write_request(series))
        request = urllib.request.Request(f"{self.url}/api/v1/write", data=body, method="POST", headers={
            "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                assert resp.status in (200, 204), resp.status
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"remote write refused: {exc.code} {exc.read()!r}") from exc


@contextmanager
def prometheus(workdir: Path, *, targets: Sequence[str] = (), rules: Path | None = None,
               interval: str = "1s") -> Iterator[Prometheus]:
    """A Prometheus server on 127.0.0.1 scraping ``targets`` and evaluating ``rules`` every ``interval``,
    storage in ``workdir``, the remote-write receiver on. Stopped (and waited for) on exit."""
    exe = binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"global": {"scrape_interval": interval, "evaluation_interval": interval}}
    if rules is not None:
        config["rule_files"] = [str(rules)]
    if targets:
        config["scrape_configs"] = [{"job_name": "llmtally", "static_configs": [{"targets": list(targets)}]}]
    (workdir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [exe, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
             "--log.level=warn"], stdout=out, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited {process.returncode}: {log.read_text()}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after 30 s: {log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def has_finite_value(result: list[dict[str, Any]]) -> bool:
    values = [float(v) for r in result for _, v in ([r["value"]] if "value" in r else r.get("values", []))]
    return any(math.isfinite(v) for v in values)


# --- the dashboards' queries, as Grafana would send them ----------------------------------------------

@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    expr: str
    instant: bool


def grafana_expr(expr: str, *, rate_interval: str = "15s", range_: str = "1h", interval: str = "5s") -> str:
    """``expr`` with Grafana's variables substituted: the built-in intervals, and "All" (``.*``) for
    the dashboard's multi-value variables."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
    expr = expr.replace("$__interval", interval)
    return re.sub(r"\$\{?(provider|model|tenant|feature)\}?", ".*", expr)


def dashboard_queries() -> list[PanelQuery]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append(PanelQuery(path.name, panel["title"], target["expr"], bool(target.get("instant"))))
        for annotation in board["annotations"]["list"]:
            if "expr" in annotation:
                found.append(PanelQuery(path.name, "annotation: " + annotation["name"], annotation["expr"], False))
    return found


def dashboard_variables() -> list[tuple[str, str, str]]:
    """(dashboard, metric selector, label) of every ``label_values(selector, label)`` variable."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for var in json.loads(path.read_text())["templating"]["list"]:
            if var["type"] == "query":
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["definition"])
                assert m, var["definition"]
                found.append((path.name, grafana_expr(m.group(1)), m.group(2)))
    return found


# --- the Prometheus text format, and remote write (protobuf + snappy, by hand: no extra dependency) -----

def parse_exposition(text: str) -> list[tuple[dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (labels with __name__, value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)", line)
        assert m, line
        labels = {k: bytes(v, "utf-8").decode("unicode_escape")
                  for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or "")}
        labels["__name__"] = m.group(1)
        samples.append((labels, float(m.group(3))))
    return samples


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:  # a length-delimited protobuf field
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def write_request(series: Sequence[tuple[Mapping[str, str], float, int]]) -> bytes:
    """prometheus.WriteRequest{timeseries: [TimeSeries{labels: [Label{name, value}], samples:
    [Sample{double value = 1; int64 timestamp = 2}]}]}: labels sorted by name, as the spec requires."""
    out = bytearray()
    for labels, value, ts_ms in series:
        ts = b"".join(_field(1, _field(1, k.encode()) + _field(2, v.encode()))
                      for k, v in sorted(labels.items()) if v != "")
        sample = b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(ts_ms & 0xFFFFFFFFFFFFFFFF)
        out += _field(1, ts + _field(2, sample))
    return bytes(out)


def snappy_block(data: bytes) -> bytes:
    """Snappy block format with literals only: valid snappy that any decoder reads (no compression)."""
    out = bytearray(_varint(len(data)))
    for start in range(0, len(data), 65536):
        chunk = data[start:start + 65536]
        n = len(chunk) - 1
        if n < 60:
            out.append(n << 2)
        elif n < 256:
            out += bytes([60 << 2, n])
        else:
            out += bytes([61 << 2]) + n.to_bytes(2, "little")
        out += chunk
    return bytes(out)
