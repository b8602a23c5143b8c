"""Shared test configuration: where the real recorded provider payloads live."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parents[1]

# The embedded ledger writes to the user's data directory by default: tests (and the apps they start)
# get a directory of their own.
if "LLMTALLY_TEST_DATA_HOME" not in os.environ:
    import tempfile

    os.environ["LLMTALLY_TEST_DATA_HOME"] = os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="llmtally-tests-")


def only_span(spans: Any) -> Any:
    """The one finished span of an in-memory exporter (its list in the message when there are others)."""
    finished = spans.get_finished_spans()
    assert len(finished) == 1, [(s.name, s.instrumentation_scope.name) for s in finished]
    return finished[0]


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def assert_rejected(span: Any, error: str) -> None:
    """A request the provider refused: error status and type, exact zero usage, and a known model's exact
    $0 (priced): an absent cost would also pass for an unpriced call."""
    from opentelemetry.trace import StatusCode

    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR and a["error.type"] == error
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (0, 0)
    assert a["llmtally.usage.estimated"] is False
    assert (a["llmtally.cost.status"], a["gen_ai.usage.cost.amount"]) == ("priced", 0.0)


def cost(a: dict[str, Any]) -> Any:
    """A span's exact cost (its ``llmtally.cost.decimal`` attribute) as a Decimal."""
    from decimal import Decimal

    return Decimal(str(a["llmtally.cost.decimal"]))


# The set-up of subprocess scenarios that need a *global* tracer provider (SDKs that trace themselves use
# it): spans in ``exporter``, usage records and metrics in ``pipeline``. Scenarios append their own code.
GLOBAL_PIPELINE = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tests.conftest import make_pipeline

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
pipeline = make_pipeline()
provider.add_span_processor(pipeline.processor)
trace.set_tracer_provider(provider)
"""


def run_scenario(code: str, *args: str, drop_env: tuple[str, ...] = (), set_env: dict[str, str] | None = None,
                 timeout: float = 120) -> Any:
    """Run ``code`` in a fresh interpreter from the repository root (``sys.argv[1:]`` = ``args``), without
    the environment variables starting with ``drop_env``; returns the JSON of its last printed line."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not (drop_env and k.startswith(drop_env))}
    env.update(set_env or {})
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=_REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def real_payloads_path() -> Path:
    """``shared/fixtures/real-payloads.jsonl``: beside the checkout (as CI lays it out), else the
    workplace's shared folder; ``LLMTALLY_REAL_PAYLOADS`` overrides both."""
    override = os.environ.get("LLMTALLY_REAL_PAYLOADS")
    if override:
        return Path(override)
    candidates = [_REPO.parent / "shared" / "fixtures" / "real-payloads.jsonl",
                  Path("/work/shared/fixtures/real-payloads.jsonl")]
    return next((p for p in candidates if p.is_file()), candidates[0])


def real_payloads(keep: Callable[[str], bool]) -> list[dict[str, Any]]:
    """The recorded responses whose ``api`` passes ``keep`` (empty when the file is missing: each test
    module asserts its own count, so a missing file fails loudly there)."""
    import json

    path = real_payloads_path()
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if keep(r["api"])]


def serve_recording(fake: Any, record: dict[str, Any], stream_type: str = "text/event-stream") -> None:
    """Have the fake provider serve ``record`` verbatim to requests carrying ``X-Fake-Replay: <id>``."""
    from llmtally.testing import Recording

    headers = {k.lower(): v for k, v in record["headers"].items()}
    headers.setdefault("content-type", stream_type if record["stream"] else "application/json")
    fake.add_recording(record["id"], Recording(status=record["status"], body=record["body"].encode(),
                                               headers=headers, stream=record["stream"]))


# --- OpenTelemetry span capture and the instrumented openai SDK ----------------------------------------

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

_EXPORTER = InMemorySpanExporter()
TRACER_PROVIDER = TracerProvider()
TRACER_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of this test only."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture(scope="session")
def openai_instrumented() -> Iterator[None]:
    pytest.importorskip("openai")
    from llmtally.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=TRACER_PROVIDER)
    yield
    instrumentor.uninstrument()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --- a usage processor with in-memory metrics and usage records -----------------------------------------

from dataclasses import dataclass  # noqa: E402

from opentelemetry.sdk._logs import LoggerProvider  # noqa: E402
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402


@dataclass
class Pipeline:
    processor: Any
    reader: InMemoryMetricReader
    logs: InMemoryLogRecordExporter

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def records(self) -> list[Any]:
        self.processor.force_flush()  # usage records are emitted off the app's thread
        return [r.log_record for r in self.logs.get_finished_logs()]


def make_pipeline(**kwargs: Any) -> Pipeline:
    from llmtally.processor import UsageSpanProcessor

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    processor = UsageSpanProcessor(meter_provider=meter_provider, logger_provider=logger_provider, **kwargs)
    return Pipeline(processor, reader, log_exporter)


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    """A UsageSpanProcessor recording every llmtally call of this test into memory."""
    p = make_pipeline()
    yield p
    p.processor.shutdown()


# --- a real PostgreSQL server on 127.0.0.1 (tests/pg.py) ------------------------------------------------

from tests.pg import postgres_server, postgres_url  # noqa: E402, F401
