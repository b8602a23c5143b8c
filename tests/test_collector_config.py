"""collector-config/: every YAML is a well-formed otelcol-contrib v0.136.0 config whose pipelines reference
defined components; every OTTL statement parses in the subset llmtally emits; the generated cost statements
price spans exactly as llmtally's Decimal engine does (run through a small OTTL interpreter, since no real
collector can run here); and cost-enrichment.yaml is what `llmtally collector-config` generates today."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmtally import semconv as sc
from llmtally.cli import main
from llmtally.collector import ottl
from llmtally.collector.costconfig import (
    CONNECTOR,
    COST_PROCESSOR,
    MONOTONIC_METRICS,
    SINGLE_WRITER,
    metric_definitions,
    render,
)
from llmtally.collector.enrich import enrich_attributes
from llmtally.collector.ottl import LOCAL_CATALOG, CostProgram, Selection, cost_program, select_catalog
from llmtally.pricing import PriceBook, bundled_catalog
from llmtally.pricing import matching as matching_rules
from llmtally.pricing.catalog import Catalog
from llmtally.pricing.engine import _FREE
from tests.ottl_subset import (
    OttlError,
    parse_condition,
    parse_statement,
    parse_value,
    run_group,
    span_env,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "collector-config"
# Components of the otelcol-contrib v0.136.0 distribution used here (from its release manifest).
CONTRIB_0_136 = {
    "receivers": {"otlp"},
    "processors": {"batch", "memory_limiter", "resourcedetection", "transform", "filter", "deltatocumulative"},
    "exporters": {"otlp", "otlphttp", "prometheus", "prometheusremotewrite", "clickhouse", "loadbalancing", "debug"},
    "connectors": {"signaltometrics", "forward", "routing"},
    "extensions": {"health_check", "file_storage"},
}
CONNECTOR_TYPES = {"signaltometrics": ("traces", "metrics"), "forward": None, "routing": None}
# base file -> overlays the collector merges onto it (--config base --config overlay)
LAYOUT = {"agent.yaml": ["agent-loadbalancing.yaml"], "gateway.yaml": ["gateway-clickhouse.yaml"],
          "cost-enrichment.yaml": []}
PRICED_KEYS = (sc.GEN_AI_USAGE_COST_AMOUNT, sc.GEN_AI_USAGE_COST_CURRENCY, sc.GEN_AI_USAGE_COST_SOURCE,
               sc.LLMTALLY_COST_STATUS, sc.LLMTALLY_PRICE_CATALOG, sc.LLMTALLY_PRICE_MODEL, sc.LLMTALLY_USAGE_CLAMPED)


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((CONFIG_DIR / name).read_text())
    assert isinstance(data, dict)
    return data


def merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """The collector's merge of several --config files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def configs() -> Iterator[tuple[str, dict[str, Any]]]:
    for base, overlays in LAYOUT.items():
        config = load(base)
        yield base, config
        for overlay in overlays:
            config = merge(config, load(overlay))
            yield f"{base}+{overlay}", config


def test_every_file_is_covered_and_states_its_collector_version() -> None:
    files = {p.name for p in CONFIG_DIR.glob("*.yaml")}
    assert files == set(LAYOUT) | {o for overlays in LAYOUT.values() for o in overlays}
    for name in files:
        text = (CONFIG_DIR / name).read_text()
        assert f"OpenTelemetry Collector Contrib v{ottl.COLLECTOR_VERSION} (otelcol-contrib)" in text, name


def _kind(component: str) -> str:
    return component.split("/", 1)[0]


@pytest.mark.parametrize("name,config", list(configs()), ids=[n for n, _ in configs()])
def test_pipelines_reference_defined_components(name: str, config: dict[str, Any]) -> None:
    for section in CONTRIB_0_136:
        for component in config.get(section) or {}:
            assert _kind(component) in CONTRIB_0_136[section], f"{section}.{component} not in otelcol-contrib 0.136"
    service = config["service"]
    extensions = set(config.get("extensions") or {})
    assert set(service.get("extensions", [])) <= extensions
    connectors = set(config.get("connectors") or {})
    as_exporter: dict[str, set[str]] = {}
    as_receiver: dict[str, set[str]] = {}
    used: set[str] = set()
    for pipeline, spec in service["pipelines"].items():
        signal = _kind(pipeline)
        assert signal in ("traces", "metrics", "logs"), pipeline
        assert spec["receivers"] and spec["exporters"], pipeline
        for receiver in spec["receivers"]:
            assert receiver in (config.get("receivers") or {}) or receiver in connectors, (pipeline, receiver)
            if receiver in connectors:
                as_receiver.setdefault(receiver, set()).add(signal)
        for processor in spec.get("processors", []):
            assert processor in (config.get("processors") or {}), (pipeline, processor)
            used.add(processor)
        for exporter in spec["exporters"]:
            assert exporter in (config.get("exporters") or {}) or exporter in connectors, (pipeline, exporter)
            if exporter in connectors:
                as_exporter.setdefault(exporter, set()).add(signal)
            used.add(exporter)
        processors = spec.get("processors", [])
        if "memory_limiter" in processors:
            assert processors[0] == "memory_limiter", pipeline  # refuse data before anything else holds it
        if "batch" in processors:
            assert processors[-1] == "batch", pipeline
    for connector in connectors:  # a connector joins the end of one pipeline to the start of another
        assert connector in as_exporter and connector in as_receiver, connector
        types = CONNECTOR_TYPES[_kind(connector)]
        if types is not None:
            assert as_exporter[connector] == {types[0]} and as_receiver[connector] == {types[1]}, connector
    # every exporter defined is used (an overlay replaces, never leaves an orphan behind)
    overlays_replace = {"otlp/gateway", "otlphttp/loki"} if "+" in name else set()
    assert set(config.get("exporters") or {}) - used <= overlays_replace, name
    # persistent queues name a storage extension the service starts
    for exporter, spec in (config.get("exporters") or {}).items():
        storage = (spec.get("sending_queue") or {}).get("storage")
        if storage is not None:
            assert storage in service["extensions"], (exporter, storage)


# The settings each component documents in the v0.136 READMEs (those used here and their siblings): a
# misspelt key fails here instead of at the collector's start. None: any value; [x]: a list of x.
_TLS = dict.fromkeys(("insecure", "ca_file", "cert_file", "key_file", "insecure_skip_verify", "server_name_override"))
_QUEUE = dict.fromkeys(("enabled", "num_consumers", "queue_size", "storage"))
_RETRY = dict.fromkeys(("enabled", "initial_interval", "max_interval", "max_elapsed_time", "multiplier",
                        "randomization_factor"))
_OTLP_OUT = {"endpoint": None, "tls": _TLS, "compression": None, "timeout": None, "headers": None,
             "sending_queue": _QUEUE, "retry_on_failure": _RETRY}
_STM_ATTR = {"key": None, "default_value": None}
_STM_METRIC = {"name": None, "description": None, "unit": None, "conditions": None, "attributes": [_STM_ATTR],
               "include_resource_attributes": [_STM_ATTR], "sum": {"value": None},
               "histogram": {"buckets": None, "count": None, "value": None},
               "exponential_histogram": {"max_size": None, "count": None, "value": None}}
SCHEMA: dict[str, Any] = {
    "receivers/otlp": {"protocols": {"grpc": {"endpoint": None}, "http": {"endpoint": None}}},
    "processors/memory_limiter": dict.fromkeys(("check_interval", "limit_mib", "spike_limit_mib", "limit_percentage",
                                                "spike_limit_percentage")),
    "processors/batch": dict.fromkeys(("send_batch_size", "send_batch_max_size", "timeout")),
    "processors/resourcedetection": {"detectors": None, "timeout": None, "override": None,
                                     "system": {"hostname_sources": None}},
    "processors/transform": {"error_mode": None, "trace_statements": [{"conditions": None, "statements": None}],
                             "metric_statements": None},
    "processors/filter": {"error_mode": None, "logs": {"log_record": None}},
    "processors/deltatocumulative": {"max_stale": None, "max_streams": None},
    "exporters/otlp": _OTLP_OUT,
    "exporters/otlphttp": _OTLP_OUT,
    "exporters/prometheus": dict.fromkeys(("endpoint", "const_labels", "namespace", "send_timestamps",
                                           "metric_expiration", "enable_open_metrics", "add_metric_suffixes"),
                                          None) | {"resource_to_telemetry_conversion": {"enabled": None}},
    "exporters/prometheusremotewrite": {"endpoint": None, "tls": _TLS, "headers": None, "external_labels": None,
                                        "namespace": None, "add_metric_suffixes": None, "retry_on_failure": _RETRY,
                                        "wal": dict.fromkeys(("directory", "buffer_size", "truncate_frequency")),
                                        "remote_write_queue": dict.fromkeys(("enabled", "queue_size", "num_consumers")),
                                        "resource_to_telemetry_conversion": {"enabled": None},
                                        "target_info": {"enabled": None}},
    "exporters/clickhouse": dict.fromkeys(("endpoint", "username", "password", "database", "ttl", "logs_table_name",
                                           "traces_table_name", "create_schema", "timeout", "cluster_name"),
                                          None) | {"sending_queue": _QUEUE, "retry_on_failure": _RETRY},
    "exporters/loadbalancing": {"routing_key": None, "protocol": {"otlp": _OTLP_OUT},
                                "resolver": {"static": {"hostnames": None},
                                             "dns": dict.fromkeys(("hostname", "port", "interval", "timeout"))}},
    "connectors/signaltometrics": {"spans": [_STM_METRIC]},
    "extensions/health_check": {"endpoint": None},
    "extensions/file_storage": {"directory": None, "timeout": None, "fsync": None, "create_directory": None,
                                "compaction": dict.fromkeys(("directory", "on_start", "on_rebound",
                                                             "max_transaction_size"))},
}


def _check_keys(value: Any, schema: Any, where: str) -> None:
    if schema is None or value is None:
        return
    if isinstance(schema, list):
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            _check_keys(item, schema[0], f"{where}[{i}]")
        return
    assert isinstance(value, dict), where
    for key, sub in value.items():
        assert key in schema, f"{where}.{key}: not a documented setting"
        _check_keys(sub, schema[key], f"{where}.{key}")


@pytest.mark.parametrize("name,config", list(configs()), ids=[n for n, _ in configs()])
def test_every_setting_is_one_the_component_documents(name: str, config: dict[str, Any]) -> None:
    for section in CONTRIB_0_136:
        for component, spec in (config.get(section) or {}).items():
            _check_keys(spec, SCHEMA[f"{section}/{_kind(component)}"], f"{section}.{component}")


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_only_environment_references_use_dollar(name: str) -> None:
    text = (CONFIG_DIR / name).read_text()
    without_escapes = text.replace("$$", "")
    references = re.findall(r"\$\{env:([A-Z0-9_]+)(?::-[^}]*)?\}", without_escapes)
    assert all(ref.startswith("LLMTALLY_") for ref in references), references
    assert without_escapes.count("$") == len(references), "a $ that is not ${env:LLMTALLY_...}"


def test_gateway_queues_survive_a_backend_outage() -> None:
    gateway = merge(load("gateway.yaml"), load("gateway-clickhouse.yaml"))
    for exporter in ("otlp/traces", "otlphttp/loki", "clickhouse"):
        spec = gateway["exporters"][exporter]
        assert spec["sending_queue"]["storage"] == "file_storage/queue", exporter
        assert spec["retry_on_failure"]["max_elapsed_time"] == 0, exporter  # 0: retried until delivered
    # Metrics are cumulative (an outage loses resolution, never totals). The remote-write WAL is off: in
    # otelcol-contrib it sends samples out of order, which Prometheus rejects for good (issue 41785).
    prw = gateway["exporters"]["prometheusremotewrite"]
    assert "wal" not in prw and prw["retry_on_failure"]["max_elapsed_time"] == 0
    assert gateway["service"]["pipelines"]["logs/usage"]["exporters"] == ["clickhouse"]
    usage_filter = gateway["processors"]["filter/usage_records"]["logs"]["log_record"]
    assert usage_filter == [f'event_name != "{sc.USAGE_EVENT_NAME}"']
    drop = parse_condition(usage_filter[0], None)
    assert drop({"event_name": sc.USAGE_EVENT_NAME}) is False and drop({"event_name": ""}) is True
    agent = merge(load("agent.yaml"), load("agent-loadbalancing.yaml"))
    assert agent["processors"]["resourcedetection"]["detectors"] == ["env", "system"]
    lb = agent["exporters"]["loadbalancing/gateways"]
    assert lb["routing_key"] == "traceID" and "endpoint" not in lb["protocol"]["otlp"]
    assert agent["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing/gateways"]
    assert agent["service"]["pipelines"]["metrics"]["exporters"] == ["otlp/gateway"]


# --- OTTL: syntax -------------------------------------------------------------------------------------
def all_ottl(config: Mapping[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(kind, text, context prefix) for every OTTL string in a config."""
    for name, spec in (config.get("processors") or {}).items():
        if _kind(name) == "transform":
            for group in spec.get("trace_statements", []):
                for condition in group.get("conditions", []):
                    yield "condition", condition, "span"
                for statement in group["statements"]:
                    yield "statement", statement, "span"
            for statement in spec.get("metric_statements", []):
                # flat statements: the collector infers the context from the paths' prefix
                yield "statement", statement, "resource" if statement.startswith("set(resource.") else "metric"
        if _kind(name) == "filter":
            for condition in spec["logs"]["log_record"]:
                yield "condition", condition, None
    for spec in (config.get("connectors") or {}).values():
        for metric in spec.get("spans", []):
            for condition in metric.get("conditions", []):
                yield "condition", condition, None
            body = metric.get("histogram") or metric.get("sum")
            yield "value", body["value"], None
            if "count" in body:
                yield "value", body["count"], None


@pytest.mark.parametrize("name", ["gateway.yaml", "cost-enrichment.yaml"])
def test_every_ottl_string_parses_in_the_subset(name: str) -> None:
    found = 0
    for kind, text, context in all_ottl(load(name)):
        parse = {"condition": parse_condition, "statement": parse_statement, "value": parse_value}[kind]
        parse(text, context)
        found += 1
    assert found > (1000 if name == "cost-enrichment.yaml" else 0)


@pytest.mark.parametrize("bad", [
    'set(span.attributes["x"], 1 + 1.0)',  # parses; fails at run time (checked below)
    'set(span.attributes["x"], "a\\.b")',  # Go's Unquote rejects \.
    'set(attributes["x"], 1)',  # no context prefix in a transform statement
    'set(span.attributes["x"], Lower("A"))',  # outside the subset
    'keep_keys(span.attributes, ["a"])',
    'set(span.attributes["x"], "$HOME")',  # the config loader would expand it
])
def test_the_parser_rejects_what_a_collector_would(bad: str) -> None:
    with pytest.raises(OttlError):
        env = span_env({}, 0)
        parse_statement(bad)(env)


def test_interpreter_semantics_that_money_depends_on() -> None:
    env = span_env({"i": 7, "f": 0.1, "s": "12"}, 0)
    parse_statement('set(span.cache["q"], span.attributes["i"] / 2)')(env)
    parse_statement('set(span.cache["n"], -7 / 2)')(env)
    parse_statement('set(span.cache["d"], Double(span.attributes["s"]) * 0.1 + span.attributes["f"])')(env)
    parse_statement('set(span.cache["nil"], span.attributes["missing"])')(env)
    assert env["cache"] == {"q": 3, "n": -3, "d": 12.0 * 0.1 + 0.1}  # set(x, nil) does nothing
    parse_statement('set(span.cache["c"], Concat([span.attributes["s"], span.attributes["missing"]], "/"))')(env)
    assert env["cache"].pop("c") == "12/<nil>"  # OTTL's Concat writes nil as "<nil>"
    assert parse_condition('span.attributes["missing"] < 1.0')(env) is False
    assert parse_condition('span.attributes["i"] == 7.0 and span.attributes["s"] != 12')(env) is True
    env["attributes"]["m"] = "gpt-4o-mini-2024-07-18"
    parse_statement('replace_pattern(span.attributes["m"], "^(gpt)-([^-]*).*", "$$2:$$1")')(env)
    assert env["attributes"]["m"] == "4o:gpt"


# --- the generated file ---------------------------------------------------------------------------------
def test_checked_in_cost_enrichment_is_what_the_generator_writes_today() -> None:
    selection = Selection()
    expected = render(cost_program(bundled_catalog(), selection), selection)
    actual = (CONFIG_DIR / "cost-enrichment.yaml").read_text()
    assert actual == expected, "regenerate: llmtally collector-config -o collector-config/cost-enrichment.yaml"


def test_cli_writes_a_filtered_snapshot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cost.yaml"
    assert main(["collector-config", "--providers", "openai,anthropic", "--models", "gpt-4o*",
                 "--models", "claude-3-5*", "--at", "2025-09-01", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Generated by `llmtally collector-config --providers anthropic,openai --models gpt-4o*,")
    config = yaml.safe_load(text)
    group = config["processors"][COST_PROCESSOR]["trace_statements"][0]
    program = CostProgram(tuple(group["conditions"]), tuple(group["statements"]), "", (), 0)
    env = run_span(program, {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
                             "gen_ai.usage.input_tokens": 1_000_000, "gen_ai.usage.output_tokens": 0})
    assert env["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT] == pytest.approx(0.15, rel=1e-15)
    env = run_span(program, {"gen_ai.provider.name": "openai", "gen_ai.request.model": "o3-mini",
                             "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 10})
    assert env["attributes"][sc.LLMTALLY_COST_STATUS] == "unpriced"  # filtered out: unpriced, never $0
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in env["attributes"]
    assert main(["collector-config", "--providers", "no-such-provider"]) == 2
    assert "unknown provider" in capsys.readouterr().err


def test_metric_definitions_use_llmtally_names_units_and_buckets() -> None:
    config = load("cost-enrichment.yaml")
    spans = config["connectors"][CONNECTOR]["spans"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for metric in spans:
        by_name.setdefault(metric["name"], []).append(metric)
    # Token usage and duration: the OpenTelemetry GenAI semantic conventions' names, units and advised buckets;
    # UCUM units throughout (annotations in braces for counts).
    token_buckets = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
    duration_buckets = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
    expected = {"gen_ai.client.token.usage": ("{token}", token_buckets),
                "gen_ai.client.operation.duration": ("s", duration_buckets),
                "gen_ai.client.operation.time_to_first_chunk": ("s", duration_buckets),
                "gen_ai.client.operation.cost": ("USD", sc.COST_BUCKETS),
                "llmtally.tokens": ("{token}", None), "llmtally.calls.unpriced": ("{call}", None),
                "llmtally.calls.estimated": ("{call}", None)}
    assert set(by_name) == set(expected)
    for name, metrics in by_name.items():
        unit, buckets = expected[name]
        # definitions sharing a name must share description and unit, or the connector emits two metrics
        assert {(m["description"], m["unit"]) for m in metrics} == {(metrics[0]["description"], unit)}, name
        for m in metrics:
            if buckets is not None:
                assert m["histogram"]["buckets"] == [float(b) for b in buckets]
            keys = [a["key"] for a in m["attributes"]]
            assert keys[:6] == [sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_MODEL,
                                sc.GEN_AI_RESPONSE_MODEL, sc.SERVER_ADDRESS, sc.ERROR_TYPE]
    monotonic = config["processors"]["transform/llmtally_monotonic"]["metric_statements"][0]
    for counter in MONOTONIC_METRICS:
        env: dict[str, Any] = {"name": counter, "is_monotonic": False}
        parse_statement(monotonic, "metric")(env)
        assert env["is_monotonic"] is True
    other = {"name": sc.METRIC_OPERATION_COST, "is_monotonic": False}
    parse_statement(monotonic, "metric")(other)
    assert other["is_monotonic"] is False


def test_each_collector_replica_writes_its_own_series() -> None:
    """The connector keeps the app's resource: two cost-enrichment replicas seeing spans of one app
    instance must still export distinct Prometheus series (job/instance), or their cumulative counters
    interleave in one series and every drop reads as a counter reset (spend counted again)."""
    config = load("cost-enrichment.yaml")
    processors = config["service"]["pipelines"]["metrics/llmtally"]["processors"]
    assert processors.index(SINGLE_WRITER) < processors.index("deltatocumulative")
    statements = config["processors"][SINGLE_WRITER]["metric_statements"]

    def export(resource: dict[str, str]) -> tuple[str | None, str | None]:
        env: dict[str, Any] = {"attributes": dict(resource)}
        for text in statements:  # the transform runs each resource statement once per resource
            parse_statement(text, "resource")(env)
        # the Prometheus exporters' job and instance labels
        return env["attributes"].get("service.name"), env["attributes"].get("service.instance.id")

    app = {"service.name": "chatbot", "service.instance.id": "pod-7"}
    a = export({**app, "signaltometrics.service.instance.id": "collector-a"})
    b = export({**app, "signaltometrics.service.instance.id": "collector-b"})
    assert a != b and a == ("chatbot", "pod-7/collector-a")
    assert export({"service.name": "chatbot", "signaltometrics.service.instance.id": "collector-a"}) \
        == ("chatbot", "collector-a")  # an app without an instance id: the replica alone tells them apart
    assert export(app) == ("chatbot", "pod-7")  # not made by the connector: untouched


def connector_values(attrs: Mapping[str, Any], scope: str = "app") -> dict[tuple[str, str], float]:
    """What the connector records for one span: (metric, kind or token type) -> value."""
    env = span_env(attrs, 1_000_000_000, 3_500_000_000, scope)
    out: dict[tuple[str, str], float] = {}
    for metric in metric_definitions():
        if parse_condition(metric.condition, None)(env):
            label = dict(metric.extra).get(sc.LLMTALLY_TOKEN_KIND) or dict(metric.extra).get(sc.GEN_AI_TOKEN_TYPE, "")
            key = (metric.name, label)
            assert key not in out or metric.name == sc.METRIC_TOKENS_BY_KIND, f"two definitions fire for {key}"
            out[key] = out.get(key, 0) + parse_value(metric.value, None)(env)
    return out


def test_connector_records_what_llmtally_would_for_an_enriched_span() -> None:
    attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
             "gen_ai.usage.input_tokens": 82000, "gen_ai.usage.cache_read.input_tokens": 50000,
             "gen_ai.usage.cache_creation.input_tokens": 30000, "gen_ai.usage.output_tokens": 1500,
             "gen_ai.usage.reasoning.output_tokens": 400, sc.LLMTALLY_COST_STATUS: "priced",
             sc.GEN_AI_USAGE_COST_AMOUNT: 0.201}
    values = connector_values(attrs)
    assert values == {
        (sc.METRIC_TOKEN_USAGE, "input"): 82000.0, (sc.METRIC_TOKEN_USAGE, "output"): 1500.0,
        (sc.METRIC_OPERATION_DURATION, ""): 2.5, (sc.METRIC_OPERATION_COST, ""): 0.201,
        (sc.METRIC_TOKENS_BY_KIND, "uncached_input"): 2000, (sc.METRIC_TOKENS_BY_KIND, "cache_read"): 50000,
        (sc.METRIC_TOKENS_BY_KIND, "cache_write"): 30000, (sc.METRIC_TOKENS_BY_KIND, "output"): 1100,
        (sc.METRIC_TOKENS_BY_KIND, "reasoning"): 400,
    }
    assert all(isinstance(v, int) for (name, _), v in values.items() if name == sc.METRIC_TOKENS_BY_KIND)
    older = connector_values({"gen_ai.usage.prompt_tokens": 7, sc.LLMTALLY_COST_STATUS: "unpriced"})
    assert older[(sc.METRIC_TOKEN_USAGE, "input")] == 7.0 and older[(sc.METRIC_TOKEN_USAGE, "output")] == 0.0
    assert older[(sc.METRIC_UNPRICED_CALLS, "")] == 1 and (sc.METRIC_OPERATION_COST, "") not in older
    assert connector_values(attrs, scope="llmtally.openai") == {}  # llmtally's own spans: counted in the app
    assert connector_values({k: v for k, v in attrs.items() if k != sc.LLMTALLY_COST_STATUS}) == {}


# --- OTTL: the engine's matching rules and prices -----------------------------------------------------------
def run_span(program: CostProgram, attrs: Mapping[str, Any], start: datetime | None = None) -> dict[str, Any]:
    base = {"gen_ai.operation.name": "chat", **attrs}
    moment = start or datetime(2025, 9, 1, 12, tzinfo=timezone.utc)
    env = span_env(base, int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000)
    run_group(list(program.conditions), list(program.statements), env)
    return env


def _unique(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item and item not in seen:
            seen.append(item)
    return seen


def name_variants(name: str) -> list[str]:
    return [name, f"  {name.upper()} ", f"{name}-2024-07-18", f"{name}-v1:0", f"us.{name}", f"eu.anthropic.{name}",
            f"global.{name}", f"global.{name}-20250929-v1:0", f"models/{name}", f"publishers/google/models/{name}@001",
            f"openrouter/{name}", f"ft:{name}:acme:tuned:abc123", f"ft:{name}-2024-08-06::x:y",
            f"arn:aws:bedrock:us-east-1::foundation-model/{name}", f"{name}-latest-0613", f"meta.{name}", "global."]


def test_candidate_names_follow_the_matching_rules_in_order() -> None:
    catalog = bundled_catalog()
    names = sorted({n for index in catalog.index.values() for n in index})
    rng = random.Random(7)
    statements = ottl._candidate_statements(sc.GEN_AI_RESPONSE_MODEL, "r", ottl._matching_patterns())
    checked = 0
    for name in [*rng.sample(names, 400), "ft:", "-2024-01-01", "models/", "us.", "GPT-4o"]:
        for variant in name_variants(name):
            env = span_env({sc.GEN_AI_RESPONSE_MODEL: variant}, 0)
            for text in statements:
                parse_statement(text)(env)
            slots = env["cache"]["rc"].split("\n")
            # an empty candidate (a name that was all prefix) never names a catalog entry
            assert _unique(slots) == [c for c in matching_rules.candidates(variant) if c], variant
            checked += 1
    assert checked > 6000


def oracle(program: CostProgram, catalog: Catalog, attrs: Mapping[str, Any], at: datetime,
           snapshot: date | None) -> dict[str, Any]:
    """What llmtally's engine adds to the span (through the rotel plugin's enrichment function), limited to
    the attributes the statements set; providers left out of the program are unpriced."""
    provider = attrs.get(sc.GEN_AI_PROVIDER_NAME) or attrs.get(sc.GEN_AI_SYSTEM)
    if snapshot is not None:  # prices of that day, at the span's time of day (off-peak windows)
        at = datetime.combine(snapshot, at.timetz())
    expected = enrich_attributes({"gen_ai.operation.name": "chat", **attrs}, at=at, book=PriceBook(catalog=catalog))
    if isinstance(provider, str) and provider.lower() not in program.providers and provider.lower() != "ollama" \
            and sc.LLMTALLY_COST_STATUS in expected:
        expected = {sc.LLMTALLY_COST_STATUS: "unpriced", sc.LLMTALLY_PRICE_CATALOG: catalog.version,
                    **({sc.LLMTALLY_USAGE_CLAMPED: True} if expected.get(sc.LLMTALLY_USAGE_CLAMPED) else {})}
    return {k: v for k, v in expected.items() if k in PRICED_KEYS}


TOKEN_MIXES: list[dict[str, Any]] = [
    {"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300},
    {"gen_ai.usage.input_tokens": 120_000, "gen_ai.usage.cache_read.input_tokens": 100_000,
     "gen_ai.usage.cache_creation.input_tokens": 5000, "gen_ai.usage.output_tokens": 2000,
     "gen_ai.usage.reasoning.output_tokens": 800},
    {"gen_ai.usage.input_tokens": 250_001, "gen_ai.usage.cache_read.input_tokens": 50_000,
     "gen_ai.usage.output_tokens": 1000},
    {"gen_ai.usage.input_tokens": 1_500_000, "gen_ai.usage.output_tokens": 70_000},
    {"gen_ai.usage.input_tokens": 9000, "gen_ai.usage.cache_write.input_tokens": 3000,
     "anthropic.usage.cache_creation.ephemeral_1h_input_tokens": 1000, "gen_ai.usage.output_tokens": 77},
    {"gen_ai.usage.output_tokens": 50},
    {"gen_ai.usage.prompt_tokens": 640, "gen_ai.usage.completion_tokens": 128},
    {"gen_ai.usage.input_tokens": 500},
    {"gen_ai.usage.input_tokens": "1200", "gen_ai.usage.output_tokens": 33.0,
     "gen_ai.usage.cache_read_input_tokens": 5000, "gen_ai.usage.reasoning_tokens": -4},
    {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 400,
     "gen_ai.usage.cache_creation_input_tokens": "many", "gen_ai.usage.output_tokens": 10,
     "gen_ai.usage.reasoning.output_tokens": 25},
]
MOMENTS = [datetime(2023, 1, 1, 0, 0, tzinfo=timezone.utc), datetime(2024, 6, 1, 2, 0, tzinfo=timezone.utc),
           datetime(2025, 3, 15, 17, 5, tzinfo=timezone.utc), datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc),
           datetime(2026, 2, 1, 0, 15, 30, 250_000, tzinfo=timezone.utc),
           datetime(2026, 11, 20, 7, 59, tzinfo=timezone.utc)]
TIERS = [None, None, "flex", "priority", "default", "auto", "scale"]


def sample_spans(program: CostProgram, catalog: Catalog, rng: random.Random,
                 per_entry: int) -> Iterator[tuple[dict[str, Any], datetime]]:
    """Spans for every priced entry the program knows (several names each), plus edge cases."""
    reverse = {pid: [p for p in program.providers if pid in ottl.provider_ids(catalog, p)] for pid in catalog.index}
    for pid, names in sorted(catalog.index.items()):
        if not reverse.get(pid):
            continue
        for _entry, entry_names in ottl._entries(names):
            for _ in range(per_entry):
                provider = rng.choice(reverse[pid])
                name = rng.choice(name_variants(rng.choice(entry_names)))
                attrs: dict[str, Any] = dict(rng.choice(TOKEN_MIXES))
                if rng.random() < 0.15:
                    attrs[sc.GEN_AI_SYSTEM] = provider.upper()
                else:
                    attrs[sc.GEN_AI_PROVIDER_NAME] = provider if rng.random() < 0.8 else provider.upper()
                slot = rng.random()
                if slot < 0.4:
                    attrs[sc.GEN_AI_RESPONSE_MODEL] = name
                elif slot < 0.6:
                    attrs[sc.GEN_AI_REQUEST_MODEL] = name
                elif slot < 0.8:  # the response model wins when both are priced
                    attrs[sc.GEN_AI_RESPONSE_MODEL] = name
                    attrs[sc.GEN_AI_REQUEST_MODEL] = rng.choice(sorted(names))
                else:  # ... and the request model prices the call when the response model is unknown
                    attrs[sc.GEN_AI_REQUEST_MODEL] = name
                    attrs[sc.GEN_AI_RESPONSE_MODEL] = name + "-unknown-build"
                tier = rng.choice(TIERS)
                if tier is not None:
                    attrs[rng.choice([sc.OPENAI_RESPONSE_SERVICE_TIER, sc.OPENAI_REQUEST_SERVICE_TIER])] = tier
                moment = rng.choice(MOMENTS) + timedelta(minutes=rng.randrange(0, 24 * 60, 35))
                yield attrs, moment
    edge = [
        {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-turbo", **TOKEN_MIXES[0]},  # unseen
        {sc.GEN_AI_PROVIDER_NAME: "ollama", sc.GEN_AI_REQUEST_MODEL: "llama3.2", **TOKEN_MIXES[0]},  # free
        {sc.GEN_AI_PROVIDER_NAME: "openrouter", sc.GEN_AI_REQUEST_MODEL: "openai/gpt-4o", **TOKEN_MIXES[0]},
        {sc.GEN_AI_PROVIDER_NAME: "my-own-gateway", sc.GEN_AI_REQUEST_MODEL: "gpt-4o", **TOKEN_MIXES[0]},
        {sc.GEN_AI_REQUEST_MODEL: "gpt-4o", **TOKEN_MIXES[0]},  # no provider at all
        {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: 42, sc.GEN_AI_RESPONSE_MODEL: "gpt-4o",
         **TOKEN_MIXES[1]},
        {sc.GEN_AI_PROVIDER_NAME: "deepseek", sc.GEN_AI_REQUEST_MODEL: "deepseek-chat", **TOKEN_MIXES[1]},
    ]
    for attrs in edge:
        for moment in MOMENTS:
            yield attrs, moment


def check_program(program: CostProgram, catalog: Catalog, per_entry: int, seed: int,
                  snapshot: date | None = None) -> tuple[int, float]:
    rng = random.Random(seed)
    worst, count = 0.0, 0
    statuses: dict[str, int] = {}
    for attrs, moment in sample_spans(program, catalog, rng, per_entry):
        env = run_span(program, attrs, moment)
        added = {k: v for k, v in env["attributes"].items() if k not in attrs and k != "gen_ai.operation.name"}
        expected = oracle(program, catalog, attrs, moment, snapshot)
        amount, want = added.pop(sc.GEN_AI_USAGE_COST_AMOUNT, None), expected.pop(sc.GEN_AI_USAGE_COST_AMOUNT, None)
        assert added == expected, (attrs, moment)
        assert (amount is None) == (want is None), (attrs, moment, amount, want)
        if want is not None:
            exact = enrich_exact(catalog, attrs, moment, snapshot)
            error = abs(Decimal(amount) - exact) / exact if exact else Decimal(abs(amount))
            assert error < Decimal("2e-15"), (attrs, moment, amount, exact)
            worst = max(worst, float(error))
        statuses[added[sc.LLMTALLY_COST_STATUS]] = statuses.get(added[sc.LLMTALLY_COST_STATUS], 0) + 1
        count += 1
    assert statuses.get("priced", 0) > count // 3 and statuses.get("unpriced", 0) > 0 and statuses.get("free", 0) > 0
    return count, worst


def enrich_exact(catalog: Catalog, attrs: Mapping[str, Any], at: datetime, snapshot: date | None) -> Decimal:
    if snapshot is not None:
        at = datetime.combine(snapshot, at.timetz())
    decimal = enrich_attributes({"gen_ai.operation.name": "chat", **attrs}, at=at,
                                book=PriceBook(catalog=catalog))[sc.LLMTALLY_COST_DECIMAL]
    return Decimal(str(decimal))


def test_generated_statements_price_like_the_decimal_engine() -> None:
    """Every priced model the default file knows, under random names, token mixes, dates, times of day and
    service tiers: same status, catalog entry and flags, and an amount within 2e-15 relative."""
    catalog = bundled_catalog()
    program = cost_program(catalog)
    count, worst = check_program(program, catalog, per_entry=2, seed=1)
    assert count > 1200
    print(f"{count} spans; worst relative error of the float amount vs the Decimal engine: {worst:.2e}")


def test_a_price_snapshot_and_a_filtered_catalog_price_like_the_engine_on_that_catalog() -> None:
    catalog = bundled_catalog()
    selection = Selection(providers=("openai", "azure.ai.openai", "anthropic", "deepseek", "gcp.vertex_ai"),
                          models=("gpt-4o*", "o3*", "claude-*", "deepseek-*", "gemini-2.5-pro*"),
                          at=date(2025, 9, 1))
    program = cost_program(catalog, selection)
    restricted = select_catalog(catalog, selection.models)
    count, _ = check_program(program, restricted, per_entry=3, seed=2, snapshot=selection.at)
    assert count > 150


def test_spans_that_must_not_be_touched() -> None:
    program = cost_program(bundled_catalog())
    usage = {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini", **TOKEN_MIXES[0]}
    for attrs in ({**usage, sc.GEN_AI_USAGE_COST_AMOUNT: 0.5},  # priced by whoever made it
                  {**usage, sc.LLMTALLY_COST_STATUS: "unpriced"},  # llmtally's own, deliberately unpriced
                  {**usage, "gen_ai.operation.name": "invoke_agent"},  # carries its children's totals
                  {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini"},  # no usage
                  {k: v for k, v in usage.items() if k != sc.GEN_AI_REQUEST_MODEL}):  # no model
        env = run_span(program, attrs)
        assert env["attributes"] == {"gen_ai.operation.name": "chat", **attrs}


def test_free_and_unpriced_are_said_explicitly() -> None:
    program = cost_program(bundled_catalog())
    free = run_span(program, {sc.GEN_AI_PROVIDER_NAME: "ollama", sc.GEN_AI_REQUEST_MODEL: "llama3", **TOKEN_MIXES[0]})
    assert free["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT] == 0.0
    assert free["attributes"][sc.LLMTALLY_COST_STATUS] == "free"
    assert free["attributes"][sc.LLMTALLY_PRICE_CATALOG] == LOCAL_CATALOG == _FREE.catalog
    unknown = run_span(program, {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-turbo",
                                 **TOKEN_MIXES[0]})
    assert unknown["attributes"][sc.LLMTALLY_COST_STATUS] == "unpriced"
    assert sc.GEN_AI_USAGE_COST_AMOUNT not in unknown["attributes"]  # never a silent $0


def test_amounts_are_doubles_close_to_the_exact_decimal() -> None:
    """The README's example call, through the statements: 12,000 input (10,000 cached) and 800 output tokens
    of gpt-4o-mini cost exactly $0.00153; the double is the nearest one to it."""
    program = cost_program(bundled_catalog())
    env = run_span(program, {sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                             sc.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18", "gen_ai.usage.input_tokens": 12000,
                             "gen_ai.usage.cache_read.input_tokens": 10000, "gen_ai.usage.output_tokens": 800})
    amount = env["attributes"][sc.GEN_AI_USAGE_COST_AMOUNT]
    assert isinstance(amount, float) and math.isclose(amount, 0.00153, rel_tol=1e-15)
    assert env["attributes"][sc.LLMTALLY_PRICE_MODEL] == "gpt-4o-mini"
