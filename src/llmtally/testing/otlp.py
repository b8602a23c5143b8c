"""A real OTLP/HTTP receiver on 127.0.0.1 that decodes what exporters send (protobuf or JSON), for tests.

    with OtlpReceiver() as otlp:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp.url
        ... run the app ...
        otlp.wait_for(lambda: otlp.logs())
        spans = otlp.spans()        # flattened: name, attributes, trace/span ids, resource attributes
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PATHS = {"/v1/traces": "traces", "/v1/metrics": "metrics", "/v1/logs": "logs"}


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    raw = getattr(value, kind)
    if kind == "array_value":
        return [_any_value(v) for v in raw.values]
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in raw.values}
    return raw


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


class OtlpReceiver:
    """Collects decoded OTLP export requests per signal."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: dict[str, list[Any]] = {"traces": [], "metrics": [], "logs": []}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpReceiver:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_for(self, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(0.05)
        raise TimeoutError("OTLP data did not arrive in time")

    # --- flattened views ------------------------------------------------------------------------
    def spans(self) -> list[dict[str, Any]]:
        out = []
        for request in self._get("traces"):
            for rs in request.resource_spans:
                resource = _attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append({"name": span.name, "scope": ss.scope.name,
                                    "attributes": _attributes(span.attributes), "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(), "resource": resource})
        return out

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for request in self._get("logs"):
            for rl in request.resource_logs:
                resource = _attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        out.append({"event_name": record.event_name, "body": _any_value(record.body),
                                    "attributes": _attributes(record.attributes), "trace_id": record.trace_id.hex(),
                                    "span_id": record.span_id.hex(), "scope": sl.scope.name, "resource": resource})
        return out

    def metrics(self) -> dict[str, list[dict[str, Any]]]:
        """Metric name -> data points (attributes plus sum/count or value) across all requests."""
        out: dict[str, list[dict[str, Any]]] = {}
        for request in self._get("metrics"):
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        points = getattr(metric, kind).data_points if kind else []
                        for p in points:
                            point: dict[str, Any] = {"attributes": _attributes(p.attributes), "unit": metric.unit}
                            if kind == "histogram":
                                point.update(sum=p.sum, count=p.count)
                            elif kind == "sum":
                                point["value"] = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                            out.setdefault(metric.name, []).append(point)
        return out

    def _get(self, signal: str) -> list[Any]:
        with self._lock:
            return list(self.requests[signal])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                signal = _PATHS.get(self.path.split("?")[0])
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    import gzip

                    body = gzip.decompress(body)
                if signal is None:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                request = _decode(signal, body, self.headers.get("content-type", ""))
                with receiver._lock:
                    receiver.requests[signal].append(request)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

        return Handler


def _decode(signal: str, body: bytes, content_type: str) -> Any:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    types: dict[str, Any] = {"traces": ExportTraceServiceRequest, "metrics": ExportMetricsServiceRequest,
                             "logs": ExportLogsServiceRequest}
    message = types[signal]()
    if "json" in content_type:
        json_format.Parse(body, message)
    else:
        message.ParseFromString(body)
    return message
