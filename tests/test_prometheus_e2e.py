"""End to end on a real Prometheus: an instrumented workload (the real openai SDK against the fake provider,
llmtally.configure() serving /metrics on 127.0.0.1), Prometheus scraping it every second with the
shipped rules, then:

* every query of both dashboards (and every variable) parses and returns data;
* the fast-burn alert stays quiet under normal load and fires under a spend spike;
* the same queries return data from metrics that reach Prometheus by remote write instead of a scrape.

The shipped rules watch windows of 5 minutes to 6 hours and a monthly budget: a test cannot wait that
long, so it runs a *variant* derived from the shipped file by :func:`fast_variant`: the same rules and
expressions, with the spend-rate windows and the fast-burn ``for`` shortened to seconds and a test
budget. A check below proves the variant differs from the shipped file only there.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import llmtally
from llmtally.instrumentation._guard import report_internal_error
from llmtally.testing import FakeProvider
from tests.prom import (
    RULES,
    Prometheus,
    dashboard_queries,
    dashboard_variables,
    grafana_expr,
    has_finite_value,
    parse_exposition,
    prometheus,
    wait_until,
)

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.usefixtures("openai_instrumented")

# Shipped window -> test window. Scrapes and rule evaluations run every second, so even the shortest
# window holds three samples. The multi-window shape (a long and a short window) is kept.
WINDOWS = {"5m": "3s", "30m": "5s", "1h": "8s", "6h": "15s"}
FAST_BURN_FOR = "2s"
# Burn rate 1 is budget / 30 days. With 9,000 USD a month, 14.4x is 0.05 USD/s: the normal load below
# spends ~0.001 USD/s (0.02x of the threshold); a spike call costs 2.70 USD, so even one spike call a
# second (a starved CI machine) is 54x the threshold.
TEST_BUDGET = 9000
NORMAL = {"input": 1200, "output": 300, "cache_read": 1024, "reasoning": 100}
SPIKE = {"input": 1_000_000, "output": 20_000}  # gpt-4o: 2.50 + 0.20 USD per call


def fast_variant(shipped: dict[str, Any]) -> dict[str, Any]:
    """The shipped rules with short spend-rate windows, a short fast-burn ``for`` and the test budget."""
    variant = json.loads(json.dumps(shipped))
    for group in variant["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            if name == "llmtally:budget_usd:monthly":
                rule["expr"] = f"vector({TEST_BUDGET})"
            elif name.startswith("llmtally:spend_usd:rate"):
                rule["expr"] = re.sub(r"\[(\w+)\]", lambda m: f"[{WINDOWS[m.group(1)]}]", rule["expr"])
            elif name == "LLMSpendFastBurn":
                rule["for"] = FAST_BURN_FOR
    return variant


def test_the_variant_changes_only_windows_budget_and_for() -> None:
    shipped = yaml.safe_load(RULES.read_text())
    variant = fast_variant(shipped)
    pairs = [(a, b) for ga, gb in zip(shipped["groups"], variant["groups"], strict=True)
             for a, b in zip(ga["rules"], gb["rules"], strict=True)]
    changed = {(a.get("record") or a["alert"]) for a, b in pairs if a != b}
    assert changed == {"llmtally:budget_usd:monthly", "llmtally:spend_usd:rate5m", "llmtally:spend_usd:rate30m",
                       "llmtally:spend_usd:rate1h", "llmtally:spend_usd:rate6h", "LLMSpendFastBurn"}
    for a, b in pairs:
        if a.get("record", "").startswith("llmtally:spend_usd:rate"):
            undo = re.sub(r"\[(\w+)\]", lambda m: "[" + {v: k for k, v in WINDOWS.items()}[m.group(1)] + "]",
                          b["expr"])
            assert undo == a["expr"]  # the same expression, only the window differs
        if a.get("alert") == "LLMSpendFastBurn":
            assert {**b, "for": a["for"]} == a


class Workload:
    """LLM calls through the real openai SDK in a background thread, in normal or spike mode."""

    def __init__(self, fake: FakeProvider) -> None:
        self.client = openai.OpenAI(base_url=fake.openai_url, api_key="k", max_retries=0)
        self.spike = False
        self.calls = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-workload", daemon=True)

    def chat(self, model: str, usage: dict[str, int] | None = None, **kwargs: Any) -> Any:
        headers = {"X-Fake-Usage": json.dumps(usage)} if usage else {}
        headers.update(kwargs.pop("headers", {}))
        return self.client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                                   extra_headers=headers, **kwargs)

    def _once(self) -> None:
        self.chat("gpt-4o-mini", NORMAL)  # outside any attribution: no tenant or feature label
        with llmtally.attributes(tenant_id="acme", feature="search"):
            self.chat("gpt-4o-mini", NORMAL)
            if self.spike:
                self.chat("gpt-4o", SPIKE)
        with llmtally.attributes(tenant_id="globex", feature="chat"):
            for _ in self.chat("gpt-4o-mini", stream=True):  # no usage: estimated, with a time to first chunk
                pass
            self.chat("house-model", {"input": 50, "output": 10})  # unpriced
            self.chat("gpt-4o-mini", headers={"X-Fake-Scenario": "malformed-usage"})
            with contextlib.suppress(openai.RateLimitError):
                self.chat("gpt-4o-mini", headers={"X-Fake-Scenario": "error-429"})
        self.calls += 7

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._once()
            except BaseException as exc:  # surfaced by the test, not swallowed
                self.errors.append(exc)
                return
            self._stop.wait(0.25)

    def __enter__(self) -> Workload:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def exporter() -> Iterator[llmtally.Configuration]:
    config = llmtally.configure(prometheus_port=0, otlp=False, instrument=False, set_global=False, ledger=False,
                                metric_attributes=["llmtally.tenant.id", "llmtally.feature"])
    yield config
    config.shutdown()


def firing(prom: Prometheus, name: str) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == name and a["state"] == "firing"]


def attribution_values(prom: Prometheus, panel: str, label: str) -> set[str]:
    (query,) = [q for q in dashboard_queries() if q.panel == panel]
    return {r["metric"].get(label, "") for r in prom.query(grafana_expr(query.expr))}


def check_dashboards(prom: Prometheus) -> None:
    """Every panel query (Grafana variables substituted) and every variable returns data."""
    failures = []
    for q in dashboard_queries():
        expr = grafana_expr(q.expr)
        try:
            result = prom.query(expr) if q.instant else prom.query_range(expr, seconds=20)
        except Exception as exc:
            failures.append(f"{q.dashboard} / {q.panel}: {exc}: {expr}")
            continue
        if not has_finite_value(result):
            failures.append(f"{q.dashboard} / {q.panel}: no data: {expr}")
    for board, selector, label in dashboard_variables():
        if not prom.get(f"/api/v1/label/{label}/values", **{"match[]": selector}):
            failures.append(f"{board} / variable {label}: no values for {selector}")
    assert not failures, "\n".join(failures)


def test_dashboards_and_fast_burn_on_a_real_prometheus(tmp_path: Path, fake_provider: FakeProvider,
                                                         exporter: llmtally.Configuration) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(fast_variant(yaml.safe_load(RULES.read_text()))))
    report_internal_error("e2e.synthetic", RuntimeError("a swallowed failure, for the internal-errors panel"))
    target = f"127.0.0.1:{exporter.prometheus_port}"
    with prometheus(tmp_path / "prom", targets=[target], rules=rules) as prom, Workload(fake_provider) as load:
        # Normal load: the burn rate is measured (not absent) and well under 14.4x; the alert stays quiet.
        wait_until(lambda: prom.query("llmtally:spend_burn_rate:1h"), 20, "the burn-rate recording rules")
        time.sleep(10)  # the longest fast-burn window (8 s) full of normal load
        burn = [float(r["value"][1]) for r in prom.query("llmtally:spend_burn_rate:1h")]
        assert burn and 0 < burn[0] < 1.44, burn
        assert not prom.query_range('ALERTS{alertname="LLMSpendFastBurn"}', seconds=12), "pending or firing"
        assert not load.errors, load.errors

        # A spend spike: pending, then firing after `for`, naming the severity and carrying the runbook.
        load.spike = True
        (alert,) = wait_until(lambda: firing(prom, "LLMSpendFastBurn"), 25, "LLMSpendFastBurn to fire")
        assert alert["labels"]["severity"] == "critical" and "runbook" in alert["annotations"]
        assert float(alert["value"]) > 14.4

        check_dashboards(prom)
        assert not load.errors, load.errors
        assert load.calls > 50
        # Spend by tenant/feature names the calls made without one instead of drawing a nameless bar.
        assert attribution_values(prom, "Cost by feature", "llmtally_feature") == {"search", "chat", "(not set)"}
        assert attribution_values(prom, "Cost by tenant", "llmtally_tenant_id") == {"acme", "globex", "(not set)"}


def test_dashboards_on_remote_written_metrics(tmp_path: Path, fake_provider: FakeProvider,
                                              exporter: llmtally.Configuration) -> None:
    """Prometheus's remote-write receiver (the path of the collector's prometheusremotewrite exporter):
    llmtally's exported samples, pushed as remote-write requests instead of scraped, serve every panel.
    The samples come from llmtally's own /metrics (the names the collector produces are the same:
    README, "SRE kit"); no collector runs here."""
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(fast_variant(yaml.safe_load(RULES.read_text()))))
    report_internal_error("e2e.synthetic", RuntimeError("a swallowed failure, for the internal-errors panel"))
    scrape = f"http://127.0.0.1:{exporter.prometheus_port}/metrics"
    with prometheus(tmp_path / "prom", rules=rules) as prom, Workload(fake_provider) as load:
        for _ in range(8):  # a sample per series per second, like a 1 s export interval
            with urllib.request.urlopen(scrape, timeout=10) as resp:
                samples = parse_exposition(resp.read().decode())
            now_ms = int(time.time() * 1000)
            prom.remote_write([({**labels, "job": "llmtally-remote-write"}, value, now_ms)
                               for labels, value in samples if labels["__name__"] != "target_info"
                               and not labels["__name__"].startswith(("python_", "process_"))])
            time.sleep(1)
        series = prom.query('count({job="llmtally-remote-write"})')
        assert series and float(series[0]["value"][1]) > 50
        # A second evaluation after the last write, so every recording rule has seen the data.
        wait_until(lambda: prom.query("llmtally:spend_burn_rate:5m > 0"), 10, "recording rules on written data")
        check_dashboards(prom)
        assert not load.errors, load.errors
