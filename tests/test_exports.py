"""The export paths: a real Prometheus scrape of configure()'s endpoint, and the zero-code path
(`opentelemetry-instrument` with only OTEL_* variables) into a real OTLP/HTTP receiver."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest

import llmtally
from llmtally.testing import FakeProvider
from llmtally.testing.otlp import OtlpReceiver
from llmtally.testing.scenario import DEFAULT_TEXT

openai = pytest.importorskip("openai")

REPO = Path(__file__).resolve().parents[1]
USAGE = {"input": 1200, "output": 300, "cache_read": 1024, "reasoning": 200}
# gpt-4o-mini: 176 * $0.15 + 1024 * $0.075 + 300 * $0.60 per 1M tokens
COST = (Decimal(176) * Decimal("0.15") + Decimal(1024) * Decimal("0.075") + Decimal(300) * Decimal("0.60")) / 10**6

# The Prometheus names dashboards and alert rules use (README: "Metric names").
PROMETHEUS_NAMES = {
    "gen_ai_client_token_usage_bucket", "gen_ai_client_token_usage_sum", "gen_ai_client_token_usage_count",
    "gen_ai_client_operation_duration_seconds_bucket", "gen_ai_client_operation_duration_seconds_sum",
    "gen_ai_client_operation_duration_seconds_count",
    "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
    "gen_ai_client_operation_cost_USD_bucket", "gen_ai_client_operation_cost_USD_sum",
    "gen_ai_client_operation_cost_USD_count",
    "llmtally_tokens_total", "llmtally_calls_unpriced_total", "llmtally_calls_estimated_total",
}


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$", line)
        assert match, line
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(3) or ""))
        samples.setdefault(match.group(1), []).append((labels, float(match.group(4))))
    return samples


@pytest.mark.usefixtures("openai_instrumented")
def test_prometheus_scrape_has_the_documented_names(fake_provider: FakeProvider) -> None:
    config = llmtally.configure(prometheus_port=0, otlp=False, instrument=False, set_global=False)
    try:
        c = openai.OpenAI(base_url=fake_provider.openai_url, api_key="k", max_retries=0)
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                  extra_headers={"X-Fake-Usage": json.dumps(USAGE)})
        list(c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                       stream=True))  # estimated, with a time to first chunk
        c.chat.completions.create(model="house-model", messages=[{"role": "user", "content": "hi"}])  # unpriced
        with urllib.request.urlopen(f"http://127.0.0.1:{config.prometheus_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        config.shutdown()
    samples = parse_prometheus(text)
    assert set(samples) >= PROMETHEUS_NAMES, PROMETHEUS_NAMES - set(samples)
    (labels, value), = [s for s in samples["gen_ai_client_operation_cost_USD_count"]]
    assert value == 2 and labels["gen_ai_request_model"] == "gpt-4o-mini"
    cost_sum = sum(v for _, v in samples["gen_ai_client_operation_cost_USD_sum"])
    # + the estimated stream: input "hi" = 1 token + 3 per message + 3 reply priming = 7 tokens;
    # output = ceil(len(text) / 4) of the fake's default answer
    estimate = (Decimal(7) * Decimal("0.15") + Decimal(-(-len(DEFAULT_TEXT) // 4)) * Decimal("0.60")) / 10**6
    assert cost_sum == pytest.approx(float(COST + estimate), rel=1e-9)
    tokens = {labels["gen_ai_token_type"]: v for labels, v in samples["gen_ai_client_token_usage_sum"]
              if labels["gen_ai_request_model"] == "gpt-4o-mini"}
    assert tokens["input"] >= 1200 and tokens["output"] >= 300
    assert [v for _, v in samples["llmtally_calls_unpriced_total"]] == [1.0]
    kinds = {labels["llmtally_token_kind"] for labels, _ in samples["llmtally_tokens_total"]}
    assert kinds == {"uncached_input", "cache_read", "output", "reasoning"}


def test_zero_code_otlp_spans_metrics_and_usage_records(fake_provider: FakeProvider) -> None:
    tool = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert tool
    fake_provider.default_headers["X-Fake-Usage"] = json.dumps(USAGE)  # the example app sends no such header
    with OtlpReceiver() as otlp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
        env.update({
            "OTEL_SERVICE_NAME": "zero-code-otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai,httpx,httpx2",  # the peers installed for other tests
            "OPENAI_BASE_URL": fake_provider.openai_url, "OPENAI_API_KEY": "sk-zero-code-secret",
        })
        proc = subprocess.run([tool, sys.executable, str(REPO / "examples" / "openai_chat.py")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        otlp.wait_for(lambda: len(otlp.spans()) >= 2 and len(otlp.logs()) >= 2 and otlp.metrics())
        spans, logs, metrics = otlp.spans(), otlp.logs(), otlp.metrics()

    assert [s["name"] for s in spans] == ["chat gpt-4o-mini", "chat gpt-4o-mini"]
    assert all(s["resource"]["service.name"] == "zero-code-otlp" for s in spans)
    first = spans[0]["attributes"]
    assert first["gen_ai.usage.input_tokens"] == 1200 and Decimal(first["llmtally.cost.decimal"]) == COST

    usage_records = [r for r in logs if r["event_name"] == "llmtally.usage"]
    assert len(usage_records) == 2
    record = usage_records[0]
    assert record["attributes"]["gen_ai.usage.cache_read.input_tokens"] == 1024
    assert Decimal(record["attributes"]["llmtally.cost.decimal"]) == COST
    assert (record["trace_id"], record["span_id"]) == (spans[0]["trace_id"], spans[0]["span_id"])

    cost_points = metrics["gen_ai.client.operation.cost"]
    assert sum(p["count"] for p in cost_points) >= 2 and cost_points[0]["unit"] == "USD"
    token_points = metrics["gen_ai.client.token.usage"]
    assert {p["attributes"]["gen_ai.token.type"] for p in token_points} == {"input", "output"}
    everything = json.dumps([spans, logs, metrics], default=str)
    assert "sk-zero-code-secret" not in everything  # the API key never reaches telemetry
