"""The Grafana dashboards as files: generated (not hand-edited), import-ready (datasources only through
variables), a consistent layout, and only names llmtally exports. That every query returns data on a
real Prometheus is tests/test_prometheus_e2e.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from llmtally import semconv as sc
from tests.prom import DASHBOARDS, RULES, dashboard_queries

BOARDS = {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}
VARIABLE = re.compile(r"\$\{?(\w+)")
BUILTIN = {"__rate_interval", "__range", "__interval", "__from", "__to", "__field"}


def test_checked_in_dashboards_are_the_generators_output() -> None:
    result = subprocess.run([sys.executable, str(DASHBOARDS / "generate.py"), "--check"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_both_dashboards_exist() -> None:
    assert set(BOARDS) == {"llm-spend.json", "model-efficiency.json"}


def walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_import_ready(name: str) -> None:
    board = BOARDS[name]
    assert board["schemaVersion"] >= 39 and board["uid"] and "id" not in board
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["traces"]["type"] == "datasource"
    assert {"provider", "model", "tenant"} <= set(variables)
    # No hard-coded datasource: every datasource reference is a variable (or Grafana's own annotations).
    for node in walk(board):
        ds = node.get("datasource")
        if isinstance(ds, dict) and ds.get("type") != "grafana":
            assert ds.get("uid") in ("${datasource}", "${traces}"), ds
    # Every variable a query or link uses is defined.
    text = json.dumps(board["panels"]) + json.dumps(board["annotations"])
    used = set(VARIABLE.findall(text)) - BUILTIN
    assert used <= set(variables), used - set(variables)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_layout(name: str) -> None:
    panels = BOARDS[name]["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] != "row":
            assert p["targets"] and all(t["expr"] for t in p["targets"]), p["title"]


def exported_names() -> set[str]:
    """Prometheus names of llmtally's metrics (README, "SRE kit"), from semconv's OpenTelemetry names."""
    hist = {sc.METRIC_TOKEN_USAGE: "", sc.METRIC_OPERATION_DURATION: "_seconds",
            sc.METRIC_TIME_TO_FIRST_CHUNK: "_seconds", sc.METRIC_OPERATION_COST: "_USD"}
    counters = {sc.METRIC_TOKENS_BY_KIND: "", sc.METRIC_UNPRICED_CALLS: "", sc.METRIC_ESTIMATED_CALLS: "",
                sc.METRIC_INTERNAL_ERRORS: "", sc.METRIC_MALFORMED_PAYLOADS: "", sc.METRIC_CACHE_SAVINGS: "_USD"}
    names = {n.replace(".", "_") + unit + part for n, unit in hist.items() for part in ("_bucket", "_sum", "_count")}
    names |= {n.replace(".", "_") + unit + "_total" for n, unit in counters.items()}
    return names


def test_queries_use_only_exported_metrics_and_shipped_recording_rules() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    recorded = {r["record"] for g in groups for r in g["rules"] if "record" in r}
    known = exported_names() | recorded | {"ALERTS"}
    functions = {"sum", "rate", "increase", "histogram_quantile", "sort_desc", "scalar", "days_in_month",
                 "day_of_month", "time", "by", "le", "vector", "label_replace"}
    for q in dashboard_queries():
        # Identifiers outside label matchers, strings and grouping clauses are metric names or functions.
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|by \([^)]*\)|\[[^\]]*\]', " ", q.expr)
        words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare)) - functions
        assert words <= known, (q.panel, words - known)


def test_forecast_gauge_shows_what_the_forecast_alert_compares() -> None:
    """An SRE paged by LLMSpendForecastOverBudget must find the alert's own number on the dashboard."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    (alert,) = [r for g in groups for r in g["rules"] if r.get("alert") == "LLMSpendForecastOverBudget"]
    assert alert["expr"] == "llmtally:spend_usd:forecast_month_end > llmtally:budget_usd:monthly"
    (gauge,) = [q for q in dashboard_queries() if q.panel == "Forecast / budget"]
    assert gauge.expr == "llmtally:spend_usd:forecast_month_end / scalar(llmtally:budget_usd:monthly)"


def test_cost_by_attribution_names_calls_without_the_label() -> None:
    """Tenant and feature labels exist only when allow-listed: the panels name the rest, never a blank bar."""
    for label in ("llmtally_feature", "llmtally_tenant_id"):
        (query,) = [q for q in dashboard_queries() if re.search(rf"sum by \({label}\)", q.expr)]
        assert f'label_replace(sum by ({label})' in query.expr and f'"{label}", "(not set)", "{label}", ""' \
            in query.expr, query.expr
