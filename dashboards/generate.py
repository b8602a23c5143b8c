"""Writes the Grafana dashboards in this folder: ``python dashboards/generate.py`` (``--check`` fails
when a checked-in file differs from what this script writes; the tests run that check).

Panels are declared here, once, so every query is reviewable in one place and every panel gets the same
datasource variable, label filters and layout rules. The JSON files are what users import.

Queries use only the names llmtally exports (README, "SRE kit") plus the recording rules of
``alerts/llmtally.rules.yml`` (the budget and burn-rate panels need those rules loaded).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39  # Grafana 10.4+/11

PROM = {"type": "prometheus", "uid": "${datasource}"}
# Every llmtally series carrying call labels is filtered by the dashboard's variables. An empty label
# (tenant/feature when not allow-listed) still matches ".*", the "All" value.
SEL = ('gen_ai_provider_name=~"$provider", gen_ai_request_model=~"$model", '
       'llmtally_tenant_id=~"$tenant", llmtally_feature=~"$feature"')

COST = "gen_ai_client_operation_cost_USD"
CALLS = "gen_ai_client_operation_duration_seconds_count"
TOKENS = "llmtally_tokens_total"
NOT_SET = "(not set)"
# Seconds from now to the end of the calendar month (UTC), as a scalar.
SECONDS_LEFT_IN_MONTH = "scalar((days_in_month() - day_of_month()) * 86400 + 86400 - time() % 86400)"


def sel(extra: str = "") -> str:
    return "{" + SEL + (", " + extra if extra else "") + "}"


def cost_by_attribution(label: str) -> str:
    """Spend by an allow-listed attribution label. Calls without it (all calls, when the key is not in
    LLMTALLY_METRIC_ATTRIBUTES) have no such label: name them instead of drawing a bar without a name."""
    return (f'sort_desc(label_replace(sum by ({label}) (increase({COST}_sum{sel()}[$__range])), '
            f'"{label}", "{NOT_SET}", "{label}", ""))')


S_CACHE_READ = sel('llmtally_token_kind="cache_read"')
S_INPUT_KINDS = sel('llmtally_token_kind=~"uncached_input|cache_read|cache_write"')
S_REASONING = sel('llmtally_token_kind="reasoning"')
S_OUTPUT_KINDS = sel('llmtally_token_kind=~"output|reasoning"')
S_ERRORS = sel('error_type!=""')
S_OUTPUT = sel('gen_ai_token_type="output"')
S_INPUT = sel('gen_ai_token_type="input"')


@dataclass
class Q:
    """One query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    exemplar: bool = False


@dataclass
class Panel:
    title: str
    kind: str  # stat | timeseries | bargauge | table | gauge
    queries: list[Q]
    unit: str = "short"
    width: int = 8
    height: int = 8
    description: str = ""
    time_from: str | None = None  # a relative time of the panel's own, e.g. "now/d" (today so far)
    thresholds: list[tuple[float | None, str]] = field(default_factory=lambda: [(None, "green")])
    stack: bool = False
    links: list[dict[str, Any]] = field(default_factory=list)
    decimals: int | None = None
    min: float | None = None


@dataclass
class Row:
    title: str
    panels: list[Panel]


def trace_link(label: str) -> dict[str, Any]:
    """A data link to Explore on the traces datasource: the calls of this series' model, as a TraceQL
    search (Tempo). For Jaeger, edit the link to a Jaeger search on the same tag."""
    pane = {"datasource": "${traces}", "queries": [{
        "refId": "A", "datasource": {"uid": "${traces}"}, "queryType": "traceql",
        "query": '{ span.gen_ai.request.model = "${__field.labels.' + label + '}" }'}],
        "range": {"from": "${__from}", "to": "${__to}"}}
    return {"title": "Traces of this model", "targetBlank": True,
            "url": "/explore?schemaVersion=1&panes=" + json.dumps({"traces": pane}, separators=(",", ":"))}


def spend_dashboard() -> tuple[dict[str, Any], list[Row]]:
    usd_h = "USD per hour"
    rows = [
        Row("Spend", [
            Panel("Spend today", "stat", [Q(f"sum(increase({COST}_sum{sel()}[$__range]))", instant=True)],
                  unit="currencyUSD", width=4, height=5, time_from="now/d", decimals=2,
                  description="Priced calls since midnight (dashboard timezone: UTC). Unpriced calls are not "
                              "in any cost figure: see \"Unpriced share\"."),
            Panel("Month to date", "stat", [Q(f"sum(increase({COST}_sum{sel()}[$__range]))", instant=True)],
                  unit="currencyUSD", width=4, height=5, time_from="now/M", decimals=2),
            Panel("Month-end forecast", "stat", [Q(
                f"sum(increase({COST}_sum{sel()}[$__range])) + sum(rate({COST}_sum{sel()}[7d]))"
                f" * {SECONDS_LEFT_IN_MONTH}", instant=True)],
                unit="currencyUSD", width=4, height=5, time_from="now/M", decimals=2,
                description="Month to date plus the last 7 days' average spend rate until the month ends, "
                            "for the calls the filters select: the rule llmtally:spend_usd:forecast_month_end "
                            "(what LLMSpendForecastOverBudget compares with the budget) computes the same for "
                            "all calls. Low in the first week of data."),
            Panel("Monthly budget", "stat", [Q("llmtally:budget_usd:monthly", instant=True)],
                  unit="currencyUSD", width=4, height=5, decimals=0,
                  description="The recording rule llmtally:budget_usd:monthly (alerts/llmtally.rules.yml): "
                              "set it once there."),
            Panel("Forecast / budget", "gauge", [Q(
                "llmtally:spend_usd:forecast_month_end / scalar(llmtally:budget_usd:monthly)", instant=True)],
                unit="percentunit", width=4, height=5, min=0,
                thresholds=[(None, "green"), (0.8, "orange"), (1.0, "red")],
                description="All spend (the filters do not apply), forecast to month end, against the budget: "
                            "exactly what LLMSpendForecastOverBudget compares (over 100% for an hour pages)."),
            Panel("Burn rate now (1h)", "stat", [Q("llmtally:spend_burn_rate:1h", instant=True)],
                  unit="x", width=4, height=5, decimals=1,
                  thresholds=[(None, "green"), (6, "orange"), (14.4, "red")],
                  description="Spend rate over the last hour as a multiple of the budget's sustainable "
                              "rate (budget / 30 days). 1 = on budget. All spend: the filters do not apply."),
            Panel("Burn rate (x budget)", "timeseries", [
                Q("llmtally:spend_burn_rate:5m", "5m"), Q("llmtally:spend_burn_rate:30m", "30m"),
                Q("llmtally:spend_burn_rate:1h", "1h"), Q("llmtally:spend_burn_rate:6h", "6h")],
                unit="x", width=12, thresholds=[(None, "green"), (6, "orange"), (14.4, "red")],
                description="Alert thresholds: 14.4x over 1h and 5m (LLMSpendFastBurn), 6x over 6h and 30m "
                            "(LLMSpendSlowBurn). All spend: the filters do not apply."),
            Panel(f"Spend rate by provider ({usd_h})", "timeseries", [Q(
                f"sum by (gen_ai_provider_name) (rate({COST}_sum{sel()}[$__rate_interval])) * 3600",
                "{{gen_ai_provider_name}}")], unit="currencyUSD", width=12, stack=True),
            Panel(f"Spend rate by model ({usd_h})", "timeseries", [Q(
                f"sum by (gen_ai_request_model) (rate({COST}_sum{sel()}[$__rate_interval])) * 3600",
                "{{gen_ai_request_model}}")], unit="currencyUSD", width=12, stack=True,
                links=[trace_link("gen_ai_request_model")]),
            Panel("Cost per call p50 / p95 / p99", "timeseries", [
                Q(f"histogram_quantile({q}, sum by (le) (rate({COST}_bucket{sel()}[$__rate_interval])))",
                  f"p{int(q * 100)}", exemplar=True) for q in (0.5, 0.95, 0.99)],
                unit="currencyUSD", width=12,
                description="Exemplars (dots) link to the trace of an expensive call when the metrics path "
                            "carries them (OTLP through a collector with exemplars on; not the direct scrape)."),
            Panel("Cost by model", "bargauge", [Q(
                f"sort_desc(sum by (gen_ai_request_model) (increase({COST}_sum{sel()}[$__range])))",
                "{{gen_ai_request_model}}", instant=True)], unit="currencyUSD", width=6, height=9,
                links=[trace_link("gen_ai_request_model")]),
            Panel("Cost by provider", "bargauge", [Q(
                f"sort_desc(sum by (gen_ai_provider_name) (increase({COST}_sum{sel()}[$__range])))",
                "{{gen_ai_provider_name}}", instant=True)], unit="currencyUSD", width=6, height=9),
            Panel("Cost by feature", "bargauge", [Q(cost_by_attribution("llmtally_feature"), "{{llmtally_feature}}",
                                                    instant=True)], unit="currencyUSD", width=6, height=9,
                description=f"Needs llmtally.feature in LLMTALLY_METRIC_ATTRIBUTES. \"{NOT_SET}\": calls made "
                            "outside llmtally.attributes(feature=...), or every call when the key is not "
                            "allow-listed."),
            Panel("Cost by tenant", "bargauge", [Q(cost_by_attribution("llmtally_tenant_id"), "{{llmtally_tenant_id}}",
                                                   instant=True)], unit="currencyUSD", width=6, height=9,
                description=f"Needs llmtally.tenant.id in LLMTALLY_METRIC_ATTRIBUTES; tenants past "
                            f"LLMTALLY_METRIC_ATTRIBUTE_LIMIT show as \"other\". \"{NOT_SET}\": calls without a "
                            "tenant, or every call when the key is not allow-listed."),
        ]),
        Row("Tokens", [
            Panel("Input / output tokens per second", "timeseries", [Q(
                f"sum by (gen_ai_token_type) (rate(gen_ai_client_token_usage_sum{sel()}[$__rate_interval]))",
                "{{gen_ai_token_type}}")], width=8,
                description="Semconv-inclusive: input includes cache reads and writes, output includes "
                            "reasoning."),
            Panel("Tokens by kind per second", "timeseries", [Q(
                f"sum by (llmtally_token_kind) (rate({TOKENS}{sel()}[$__rate_interval]))",
                "{{llmtally_token_kind}}")], width=8, stack=True,
                description="Disjoint kinds: they add up to input + output without double counting."),
            Panel("Cache hit ratio", "timeseries", [Q(
                f'sum(rate({TOKENS}{S_CACHE_READ}[$__rate_interval]))'
                f' / sum(rate({TOKENS}{S_INPUT_KINDS}'
                "[$__rate_interval]))", "cache read / input")], unit="percentunit", width=8, min=0),
            Panel("Cache savings", "stat", [Q(
                f"sum(increase(llmtally_cache_savings_USD_total{sel()}[$__range]))", instant=True)],
                unit="currencyUSD", width=4, height=5, decimals=2,
                description="What cache reads would have cost at the uncached input price, minus what they "
                            "cost, over the dashboard's time range (llmtally.cache.savings)."),
            Panel("Cache savings rate (USD per hour)", "timeseries", [Q(
                f"sum by (gen_ai_request_model) (rate(llmtally_cache_savings_USD_total{sel()}"
                "[$__rate_interval])) * 3600", "{{gen_ai_request_model}}")], unit="currencyUSD", width=10,
                height=5),
            Panel("Reasoning share of output", "timeseries", [Q(
                f'sum(rate({TOKENS}{S_REASONING}[$__rate_interval]))'
                f' / sum(rate({TOKENS}{S_OUTPUT_KINDS}[$__rate_interval]))',
                "reasoning / output")], unit="percentunit", width=10, height=5, min=0),
        ]),
        Row("Trust in the numbers", [
            Panel("Estimated share", "timeseries", [Q(
                f"sum by (gen_ai_provider_name) (rate(llmtally_calls_estimated_total{sel()}[$__rate_interval]))"
                f" / sum by (gen_ai_provider_name) (rate({CALLS}{sel()}[$__rate_interval]))",
                "{{gen_ai_provider_name}}")], unit="percentunit", width=6, min=0,
                description="Calls whose token counts were estimated (the provider returned no usage)."),
            Panel("Unpriced share", "timeseries", [Q(
                f"sum by (gen_ai_provider_name) (rate(llmtally_calls_unpriced_total{sel()}[$__rate_interval]))"
                f" / sum by (gen_ai_provider_name) (rate({CALLS}{sel()}[$__rate_interval]))",
                "{{gen_ai_provider_name}}")], unit="percentunit", width=6, min=0,
                description="Calls with no known price: their spend is missing from every cost panel."),
            Panel("Unpriced calls by model", "table", [Q(
                f"sort_desc(sum by (gen_ai_provider_name, gen_ai_request_model) "
                f"(increase(llmtally_calls_unpriced_total{sel()}[$__range])))", instant=True)], width=6,
                description="Add these models to a price file (LLMTALLY_PRICE_FILES)."),
            Panel("llmtally internal errors and corrected payloads", "timeseries", [
                Q("sum by (llmtally_error_kind) (increase(llmtally_internal_errors_total[$__rate_interval]))",
                  "internal: {{llmtally_error_kind}}"),
                Q("sum by (gen_ai_provider_name) (increase(llmtally_payloads_malformed_total[$__rate_interval]))",
                  "malformed payload: {{gen_ai_provider_name}}")], width=6,
                description="Failures llmtally swallowed (the app was unaffected) and provider usage payloads "
                            "it had to correct."),
        ]),
        Row("Traffic and latency", [
            Panel("Requests per second by model", "timeseries", [Q(
                f"sum by (gen_ai_request_model) (rate({CALLS}{sel()}[$__rate_interval]))",
                "{{gen_ai_request_model}}")], unit="reqps", width=8, stack=True),
            Panel("Errors per second by type", "timeseries", [Q(
                f'sum by (error_type) (rate({CALLS}{S_ERRORS}[$__rate_interval]))',
                "{{error_type}}")], unit="reqps", width=8, stack=True),
            Panel("Error ratio by provider", "timeseries", [Q(
                f'sum by (gen_ai_provider_name) (rate({CALLS}{S_ERRORS}[$__rate_interval]))'
                f" / sum by (gen_ai_provider_name) (rate({CALLS}{sel()}[$__rate_interval]))",
                "{{gen_ai_provider_name}}")], unit="percentunit", width=8, min=0,
                thresholds=[(None, "green"), (0.05, "red")]),
            Panel("Latency p50 / p95 / p99", "timeseries", [
                Q(f"histogram_quantile({q}, sum by (le) (rate(gen_ai_client_operation_duration_seconds_bucket"
                  f"{sel()}[$__rate_interval])))", f"p{int(q * 100)}", exemplar=True) for q in (0.5, 0.95, 0.99)],
                unit="s", width=12),
            Panel("Time to first chunk p50 / p95 / p99 (streams)", "timeseries", [
                Q(f"histogram_quantile({q}, sum by (le) (rate(gen_ai_client_operation_time_to_first_chunk_seconds"
                  f"_bucket{sel()}[$__rate_interval])))", f"p{int(q * 100)}", exemplar=True)
                for q in (0.5, 0.95, 0.99)], unit="s", width=12),
        ]),
    ]
    meta = {"uid": "llmtally-spend", "title": "LLM spend",
            "description": "Spend, budget burn, tokens, cache, data quality, errors and latency of LLM calls "
                           "instrumented by llmtally."}
    return meta, rows


def efficiency_dashboard() -> tuple[dict[str, Any], list[Row]]:
    by_model = "gen_ai_request_model"
    output_tokens = f'gen_ai_client_token_usage_sum{S_OUTPUT}'
    rows = [
        Row("Cost efficiency by model", [
            Panel("Cost per request by model", "bargauge", [Q(
                f"sort_desc(sum by ({by_model}) (increase({COST}_sum{sel()}[$__range]))"
                f" / sum by ({by_model}) (increase({COST}_count{sel()}[$__range])))",
                "{{gen_ai_request_model}}", instant=True)], unit="currencyUSD", width=12, height=9, decimals=5,
                description="Average cost of a priced call over the time range.",
                links=[trace_link(by_model)]),
            Panel("Cost per 1k output tokens by model", "bargauge", [Q(
                f"sort_desc(sum by ({by_model}) (increase({COST}_sum{sel()}[$__range]))"
                f" / (sum by ({by_model}) (increase({output_tokens}[$__range])) > 0) * 1000)",
                "{{gen_ai_request_model}}", instant=True)], unit="currencyUSD", width=12, height=9, decimals=5,
                description="All of a call's cost (input included) per 1,000 output tokens: what an answer "
                            "costs. Models with no output (embeddings) are left out.",
                links=[trace_link(by_model)]),
            Panel("Cost per request over time", "timeseries", [Q(
                f"sum by ({by_model}) (rate({COST}_sum{sel()}[$__rate_interval]))"
                f" / sum by ({by_model}) (rate({COST}_count{sel()}[$__rate_interval]))",
                "{{gen_ai_request_model}}")], unit="currencyUSD", width=12),
            Panel("Cost per 1k output tokens over time", "timeseries", [Q(
                f"sum by ({by_model}) (rate({COST}_sum{sel()}[$__rate_interval]))"
                f" / (sum by ({by_model}) (rate({output_tokens}[$__rate_interval])) > 0) * 1000",
                "{{gen_ai_request_model}}")], unit="currencyUSD", width=12),
        ]),
        Row("What a request looks like, by model", [
            Panel("Input tokens per request", "bargauge", [Q(
                f'sort_desc(sum by ({by_model}) (increase(gen_ai_client_token_usage_sum'
                f'{S_INPUT}[$__range]))'
                f' / sum by ({by_model}) (increase(gen_ai_client_token_usage_count'
                f'{S_INPUT}[$__range])))',
                "{{gen_ai_request_model}}", instant=True)], width=6, height=9, decimals=0),
            Panel("Output tokens per request", "bargauge", [Q(
                f"sort_desc(sum by ({by_model}) (increase({output_tokens}[$__range]))"
                f' / sum by ({by_model}) (increase(gen_ai_client_token_usage_count'
                f'{S_OUTPUT}[$__range])))',
                "{{gen_ai_request_model}}", instant=True)], width=6, height=9, decimals=0),
            Panel("Cache hit ratio by model", "bargauge", [Q(
                f'sort_desc(sum by ({by_model}) (increase({TOKENS}{S_CACHE_READ}'
                f"[$__range])) / sum by ({by_model}) (increase({TOKENS}"
                f'{S_INPUT_KINDS}[$__range])))',
                "{{gen_ai_request_model}}", instant=True)], unit="percentunit", width=6, height=9, min=0),
            Panel("Latency p95 by model", "bargauge", [Q(
                f"sort_desc(histogram_quantile(0.95, sum by ({by_model}, le) "
                f"(rate(gen_ai_client_operation_duration_seconds_bucket{sel()}[$__range]))))",
                "{{gen_ai_request_model}}", instant=True)], unit="s", width=6, height=9,
                links=[trace_link(by_model)]),
        ]),
    ]
    meta = {"uid": "llmtally-model-efficiency", "title": "LLM model efficiency",
            "description": "What each model costs per request and per 1k output tokens, and why."}
    return meta, rows


# --- JSON rendering ---------------------------------------------------------------------------------

def _variables() -> list[dict[str, Any]]:
    def ds(name: str, label: str, plugin: str) -> dict[str, Any]:
        return {"type": "datasource", "name": name, "label": label, "query": plugin, "current": {},
                "hide": 0, "includeAll": False, "multi": False, "options": [], "refresh": 1, "regex": "",
                "skipUrlSync": False}

    def labels(name: str, label: str, query: str) -> dict[str, Any]:
        return {"type": "query", "name": name, "label": label, "datasource": PROM, "definition": query,
                "query": query, "refresh": 2, "sort": 1,  # a plain string: every Grafana version reads it
                "includeAll": True, "multi": True, "allValue": ".*",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0,
                "regex": "", "skipUrlSync": False}

    return [
        ds("datasource", "Prometheus", "prometheus"),
        ds("traces", "Traces (Tempo)", "tempo"),
        labels("provider", "Provider", f"label_values({CALLS}, gen_ai_provider_name)"),
        labels("model", "Model", f'label_values({CALLS}{{gen_ai_provider_name=~"$provider"}}, gen_ai_request_model)'),
        labels("tenant", "Tenant", f"label_values({CALLS}, llmtally_tenant_id)"),
        labels("feature", "Feature", f"label_values({CALLS}, llmtally_feature)"),
    ]


def _panel_json(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, q in enumerate(p.queries):
        targets.append({"refId": chr(ord("A") + i), "datasource": PROM, "editorMode": "code", "expr": q.expr,
                        "legendFormat": q.legend or "__auto", "range": not q.instant, "instant": q.instant,
                        "exemplar": q.exemplar, **({"format": "table"} if p.kind == "table" else {})})
    defaults: dict[str, Any] = {
        "unit": p.unit, "color": {"mode": "thresholds" if p.kind in ("stat", "gauge") else "palette-classic"},
        "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in p.thresholds]},
        "links": p.links, "mappings": []}
    if p.decimals is not None:
        defaults["decimals"] = p.decimals
    if p.min is not None:
        defaults["min"] = p.min
    options: dict[str, Any]
    if p.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 20 if p.stack else 0,
                              "showPoints": "never", "spanNulls": False,
                              "stacking": {"mode": "normal" if p.stack else "none", "group": "A"},
                              "thresholdsStyle": {"mode": "dashed" if len(p.thresholds) > 1 else "off"}}
        options = {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                              "calcs": ["mean", "max", "lastNotNull"]},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    elif p.kind in ("stat", "gauge"):
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "orientation": "auto", "textMode": "auto", "colorMode": "value", "graphMode": "none",
                   "justifyMode": "auto", "showThresholdLabels": False, "showThresholdMarkers": True}
    elif p.kind == "bargauge":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "orientation": "horizontal", "displayMode": "basic", "showUnfilled": True,
                   "valueMode": "color", "namePlacement": "auto", "sizing": "auto"}
    else:  # table
        options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    panel: dict[str, Any] = {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description, "datasource": PROM,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y}, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []}, "options": options}
    if p.kind == "table":
        panel["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    if p.time_from:
        panel["timeFrom"] = p.time_from
        panel["hideTimeOverride"] = False
    return panel


def _layout(rows: list[Row]) -> Iterator[dict[str, Any]]:
    """Rows full width; panels left to right, wrapping at 24 columns."""
    pid, y = 1, 0
    for row in rows:
        yield {"id": pid, "type": "row", "title": row.title, "collapsed": False, "panels": [],
               "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}}
        pid, y, x, line_h = pid + 1, y + 1, 0, 0
        for p in row.panels:
            if x + p.width > 24:
                x, y, line_h = 0, y + line_h, 0
            yield _panel_json(p, pid, x, y)
            pid, x, line_h = pid + 1, x + p.width, max(line_h, p.height)
        y += line_h


def render(meta: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    return {
        "uid": meta["uid"], "title": meta["title"], "description": meta["description"],
        "tags": ["llmtally", "llm", "cost"], "timezone": "utc", "editable": True, "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": "1m", "liveNow": False,
        "fiscalYearStartMonth": 0, "weekStart": "",
        "time": {"from": "now-24h", "to": "now"}, "timepicker": {},
        "templating": {"list": _variables()},
        "annotations": {"list": [
            {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
             "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
             "type": "dashboard"},
            {"datasource": PROM, "enable": True, "hide": False, "iconColor": "red", "name": "llmtally alerts",
             "expr": 'ALERTS{alertname=~"LLM.*", alertstate="firing"}', "step": "1m",
             "titleFormat": "{{alertname}}", "textFormat": "{{gen_ai_provider_name}} {{gen_ai_request_model}}",
             "useValueForTime": False}]},
        "links": [{"type": "dashboards", "tags": ["llmtally"], "asDropdown": False, "title": "llmtally",
                   "includeVars": True, "keepTime": True, "targetBlank": False, "icon": "external link",
                   "tooltip": "", "url": ""}],
        "panels": list(_layout(rows)),
    }


DASHBOARDS = {"llm-spend.json": spend_dashboard, "model-efficiency.json": efficiency_dashboard}


def build() -> dict[str, str]:
    return {name: json.dumps(render(*make()), indent=2) + "\n" for name, make in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a checked-in dashboard is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in build().items():
        path = HERE / name
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale: " + ", ".join(stale) + " (run python dashboards/generate.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
