"""Zero-code setup: ``opentelemetry-instrument python app.py`` configures the OpenTelemetry SDK from
the standard OTEL_* variables (this configurator), attaches llmtally's usage processor, and loads
llmtally's instrumentors (their ``opentelemetry_instrumentor`` entry points)."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry._logs import get_logger_provider
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from llmtally._setup import attach_ledger
from llmtally.instrumentation._guard import logger
from llmtally.instrumentation.call import set_default_price_book
from llmtally.pricing import PriceBook
from llmtally.processor import UsageSpanProcessor

ENV_RUN_SUMMARY = "LLMTALLY_RUN_SUMMARY"  # set by `llmtally run`: print a spend summary at exit


class LlmtallyConfigurator(_OTelSDKConfigurator):
    """The SDK's own configurator (providers and exporters from OTEL_*), plus the usage processor."""

    processor: UsageSpanProcessor | None = None

    def _configure(self, **kwargs: Any) -> None:
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        set_default_price_book(PriceBook.from_env())  # a broken LLMTALLY_PRICE_FILES fails at start-up
        tracer_provider = trace.get_tracer_provider()
        if not hasattr(tracer_provider, "add_span_processor"):
            logger.warning("llmtally: no SDK tracer provider configured; usage metrics and records are off")
            return
        logger_provider = get_logger_provider()
        if not hasattr(logger_provider, "add_log_record_processor"):
            # No OTEL_LOGS_EXPORTER: a logger provider of our own, for the ledger's usage records.
            from opentelemetry._logs import set_logger_provider
            from opentelemetry.sdk._logs import LoggerProvider

            logger_provider = LoggerProvider(resource=getattr(tracer_provider, "resource", None))
            set_logger_provider(logger_provider)
        attach_ledger(logger_provider, None)
        processor = UsageSpanProcessor(meter_provider=metrics.get_meter_provider(),  # after the providers:
                                       logger_provider=logger_provider)  # its exit hook runs before theirs
        tracer_provider.add_span_processor(processor)
        LlmtallyConfigurator.processor = processor
        if os.environ.get(ENV_RUN_SUMMARY):
            _RunSummary().install()


class _RunSummary:
    """``llmtally run``: a short spend summary on stderr when the program exits."""

    def __init__(self) -> None:
        from decimal import Decimal

        self.calls = self.input = self.output = self.unpriced = self.estimated = 0
        self.cost = Decimal(0)

    def install(self) -> None:
        import atexit

        from llmtally.instrumentation.call import add_listener

        add_listener(self.add)
        atexit.register(self.print)

    def add(self, record: Any) -> None:
        self.calls += 1
        self.input += record.usage.input_tokens
        self.output += record.usage.output_tokens
        self.estimated += record.usage.estimated
        if record.cost.amount is None:
            self.unpriced += 1
        else:
            self.cost += record.cost.amount

    def print(self) -> None:
        import sys

        from llmtally.instrumentation.call import format_decimal
        from llmtally.ledger.store import default_url, redact

        if not self.calls:
            return
        flags = []
        if self.unpriced:
            flags.append(f"{self.unpriced} unpriced")
        if self.estimated:
            flags.append(f"{self.estimated} estimated")
        extra = f" ({', '.join(flags)})" if flags else ""
        print(f"llmtally: {self.calls} LLM calls, {self.input:,} input / {self.output:,} output tokens, "
              f"${format_decimal(self.cost)}{extra}; ledger: {redact(default_url())}", file=sys.stderr)


class LlmtallyDistro(BaseDistro):  # type: ignore[misc]
    """Defaults like the upstream distro: OTLP for every signal unless OTEL_*_EXPORTER says otherwise."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "otlp")
