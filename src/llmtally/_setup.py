"""``llmtally.configure()``: tracer, meter and logger providers from the standard OTEL_* variables, the
usage processor, and every installed SDK instrumented, in one call."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import _logs as logs
from opentelemetry import metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Sampler

from llmtally.instrumentation._guard import logger
from llmtally.instrumentation.call import set_default_price_book
from llmtally.pricing import PriceBook
from llmtally.pricing.catalog import bundled_catalog
from llmtally.processor import UsageSpanProcessor

ENV_LEDGER = "LLMTALLY_LEDGER"  # "off" disables the embedded ledger
ENV_PROMETHEUS_PORT = "LLMTALLY_PROMETHEUS_PORT"
ENV_PROMETHEUS_HOST = "LLMTALLY_PROMETHEUS_HOST"
_OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                       "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")


@dataclass
class Configuration:
    """What :func:`configure` set up; ``shutdown()`` flushes and stops it."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider
    processor: UsageSpanProcessor
    prometheus_port: int | None = None
    ledger: Any = None
    """The :class:`~llmtally.ledger.LedgerExporter` writing usage records, when the ledger is on."""
    instrumented: list[str] = field(default_factory=list)
    _server: Any = None
    _instrumentors: list[Any] = field(default_factory=list)

    def shutdown(self) -> None:
        for instrumentor in self._instrumentors:
            try:
                instrumentor.uninstrument()
            except Exception as exc:  # pragma: no cover
                logger.debug("uninstrument failed: %s", exc)
        self.processor.shutdown()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def configure(*, service_name: str | None = None, otlp: bool | None = None, prometheus_port: int | None = None,
              prometheus_host: str | None = None, price_files: Sequence[str | Path] = (),
              metric_attributes: Sequence[str] | None = None, sampler: Sampler | None = None,
              instrument: bool = True, set_global: bool = True, ledger: bool | str | None = None,
              extra_metric_readers: Sequence[MetricReader] = ()) -> Configuration:
    """Set up OpenTelemetry with llmtally in one call.

    * ``otlp``: export traces, metrics and usage log records over OTLP. Default: on when an
      ``OTEL_EXPORTER_OTLP_*ENDPOINT`` variable is set; endpoint, protocol (``OTEL_EXPORTER_OTLP_PROTOCOL``,
      default ``http/protobuf``), headers and timeouts come from the standard variables.
    * ``prometheus_port`` (or ``LLMTALLY_PROMETHEUS_PORT``): serve metrics for scraping on
      ``prometheus_host`` (default 127.0.0.1, or ``LLMTALLY_PROMETHEUS_HOST``); 0 picks a free port.
    * ``price_files`` (plus ``LLMTALLY_PRICE_FILES``) are loaded now: a broken file raises here.
    * ``metric_attributes``: attribution keys allowed as metric labels (default
      ``LLMTALLY_METRIC_ATTRIBUTES``; none).
    * ``sampler``: default from ``OTEL_TRACES_SAMPLER``. Metrics and usage records are exact under any.
    * ``instrument``: instrument every installed SDK llmtally supports.
    * ``ledger``: write usage records to the embedded ledger: True (the default, unless
      ``LLMTALLY_LEDGER=off``) uses ``LLMTALLY_LEDGER_URL`` or a SQLite file in the user's data directory;
      a string is the database URL; False turns it off. With the ledger on and no SIGTERM handler of the
      app's own, SIGTERM becomes a normal exit so queued usage records are flushed.
    """
    set_default_price_book(PriceBook.from_env(price_files))
    threading.Thread(target=bundled_catalog, name="llmtally-catalog", daemon=True).start()  # warm, off-thread

    attrs = {"service.name": service_name} if service_name else {}
    resource = Resource.create(attrs)
    if otlp is None:
        otlp = any(os.environ.get(name) for name in _OTLP_ENDPOINT_VARS)
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf").strip()

    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    if otlp:
        tracer_provider.add_span_processor(BatchSpanProcessor(_otlp("trace", protocol)))

    readers: list[MetricReader] = list(extra_metric_readers)
    if otlp:
        readers.append(PeriodicExportingMetricReader(_otlp("metric", protocol)))
    server = None
    if prometheus_port is None and os.environ.get(ENV_PROMETHEUS_PORT):
        prometheus_port = int(os.environ[ENV_PROMETHEUS_PORT])
    if prometheus_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        readers.append(PrometheusMetricReader())
        host = prometheus_host or os.environ.get(ENV_PROMETHEUS_HOST, "127.0.0.1")
        server, _thread = start_http_server(prometheus_port, addr=host)
        prometheus_port = int(server.server_port)
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    logger_provider = LoggerProvider(resource=resource)
    if otlp:
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(_otlp("log", protocol)))
    ledger_exporter = attach_ledger(logger_provider, ledger)

    processor = UsageSpanProcessor(meter_provider=meter_provider, logger_provider=logger_provider,
                                   metric_attributes=metric_attributes)
    tracer_provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        logs.set_logger_provider(logger_provider)

    config = Configuration(tracer_provider, meter_provider, logger_provider, processor, prometheus_port,
                           ledger=ledger_exporter, _server=server)
    if instrument:
        for name, instrumentor in installed_instrumentors():
            try:
                instrumentor.instrument(tracer_provider=tracer_provider)
                config.instrumented.append(name)
                config._instrumentors.append(instrumentor)
            except Exception as exc:
                logger.warning("llmtally: could not instrument %s: %s", name, exc)
    return config


def ledger_wanted(ledger: bool | str | None) -> str | None:
    """The ledger URL to use ("" for the default URL), or None when the ledger is off."""
    if ledger is None:
        ledger = os.environ.get(ENV_LEDGER, "on").strip().lower() not in ("off", "0", "false", "no")
    if ledger is False:
        return None
    return "" if ledger is True else str(ledger)


def attach_ledger(logger_provider: Any, ledger: bool | str | None) -> Any:
    """Add the ledger exporter to a logger provider (batched, off the app's thread); returns it or None."""
    url = ledger_wanted(ledger)
    if url is None:
        return None
    from llmtally.ledger import LedgerExporter

    exporter = LedgerExporter(url or None)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=500))
    install_sigterm_flush()
    return exporter


def install_sigterm_flush() -> bool:
    """Make SIGTERM a normal exit (atexit hooks flush telemetry) when the app set no handler itself."""
    import signal
    import sys

    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False  # the app's own handler decides

    def _exit(signum: int, frame: Any) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    return True


def installed_instrumentors() -> list[tuple[str, Any]]:
    """llmtally's instrumentors whose SDK is installed (their ``opentelemetry_instrumentor`` entry points)."""
    from importlib.metadata import entry_points

    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    found = []
    for ep in entry_points(group="opentelemetry_instrumentor"):
        if not ep.name.startswith("llmtally_"):
            continue
        try:
            instrumentor = ep.load()()
        except ImportError:
            continue
        if get_dependency_conflicts(instrumentor.instrumentation_dependencies()) is None:
            found.append((ep.name, instrumentor))
    return found


def _otlp(signal: str, protocol: str) -> Any:
    grpc = protocol == "grpc"
    if signal == "trace":
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # type: ignore[assignment]
        return OTLPSpanExporter()
    if signal == "metric":
        if grpc:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
                OTLPMetricExporter,
            )
        return OTLPMetricExporter()
    if grpc:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    else:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter  # type: ignore[assignment]
    return OTLPLogExporter()
