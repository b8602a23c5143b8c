"""Zero-code setup: ``opentelemetry-instrument python app.py`` configures the OpenTelemetry SDK from
the standard OTEL_* variables (this configurator) and loads llmtally's instrumentors (their
``opentelemetry_instrumentor`` entry points)."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _OTelSDKConfigurator


class LlmtallyConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator (tracer/meter/logger providers and exporters from OTEL_*)."""


class LlmtallyDistro(BaseDistro):  # type: ignore[misc]
    """Defaults like the upstream distro: OTLP for every signal unless OTEL_*_EXPORTER says otherwise."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "otlp")
