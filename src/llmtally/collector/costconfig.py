"""The cost-enrichment collector config: generated statements, a span-to-metrics connector that
produces llmtally's own metric names, and the pipelines around them (``collector-config/cost-enrichment.yaml``).

Metrics come from the ``signaltometrics`` connector (``spanmetrics`` cannot record an attribute's value,
such as a cost, as a histogram). Its metric definitions reuse llmtally's names, units and bucket
boundaries from :mod:`llmtally.semconv`, so dashboards and alert rules read both paths the same way.
Differences from llmtally's own export, all due to what a collector can see:

* the connector aggregates per batch as delta temporality; ``deltatocumulative`` makes cumulative series
  (what Prometheus remote write needs), and a transform marks the counters monotonic (the connector's
  sums are not), so Prometheus sees ``llmtally_tokens_total`` as from llmtally itself;
* attributes a span lacks are recorded as an empty string (the connector drops a metric whose attribute
  is missing and has no default); Prometheus treats an empty label as no label;
* token metrics read the semconv attributes (older spellings only for input/output totals) without
  llmtally's clamping of malformed counts;
* only spans that reach the collector are counted: with head sampling in the apps, metrics are
  estimates (each span is weighted by its ``AdjustedCount()`` when the sampler records a threshold);
* each collector replica writes its own series: the connector keeps the span's resource (so Prometheus's
  ``job``/``instance`` are the app's ``service.name``/``service.instance.id``) and marks its own identity
  only in ``signaltometrics.service.instance.id``, which Prometheus exporters do not turn into a label.
  Two replicas receiving spans of one app instance would then write one Prometheus series from two
  cumulative counters (their values interleave and every drop reads as a counter reset: spend
  multiplied). A transform appends the replica's id to ``service.instance.id`` to keep one writer per
  series.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import yaml

from llmtally import semconv as sc
from llmtally.collector.ottl import COLLECTOR_VERSION, CostProgram, Selection, attr, ottl_string

_SPAN_ATTRS: Final = (sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_REQUEST_MODEL,
                      sc.GEN_AI_RESPONSE_MODEL, sc.SERVER_ADDRESS, sc.ERROR_TYPE)
# Counters llmtally exports as monotonic sums (the connector's sums are not marked monotonic).
MONOTONIC_METRICS: Final = (sc.METRIC_TOKENS_BY_KIND, sc.METRIC_UNPRICED_CALLS, sc.METRIC_ESTIMATED_CALLS)
CONNECTOR: Final = "signaltometrics/llmtally"
SINGLE_WRITER: Final = "transform/llmtally_single_writer"
_INSTANCE: Final = 'resource.attributes["service.instance.id"]'
_WRITER: Final = 'resource.attributes["signaltometrics.service.instance.id"]'
# Resource statements (one run per resource): the app's instance id, or none, plus this replica's.
SINGLE_WRITER_STATEMENTS: Final = (
    f'set({_INSTANCE}, Concat([{_INSTANCE}, {_WRITER}], "/")) where {_INSTANCE} != nil and {_WRITER} != nil',
    f"set({_INSTANCE}, {_WRITER}) where {_INSTANCE} == nil",
)
COST_PROCESSOR: Final = "transform/llmtally_cost"


class _Flow(list[Any]):
    """A list written on one line (bucket boundaries, pipeline members)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True))


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One signaltometrics span metric definition (several may share a name: they form one metric)."""

    name: str
    description: str
    unit: str
    kind: str  # "histogram" | "sum"
    value: str
    condition: str
    extra: tuple[tuple[str, str], ...] = ()
    buckets: tuple[float, ...] = ()

    def to_config(self) -> dict[str, Any]:
        attributes: list[dict[str, Any]] = [{"key": sc.GEN_AI_OPERATION_NAME}]
        attributes += [{"key": key, "default_value": ""} for key in _SPAN_ATTRS[1:]]
        attributes += [{"key": key, "default_value": value} for key, value in self.extra]
        out: dict[str, Any] = {"name": self.name, "description": self.description, "unit": self.unit,
                               "conditions": [self.condition], "attributes": attributes}
        if self.kind == "histogram":
            out["histogram"] = {"buckets": _Flow(self.buckets), "count": "Int(AdjustedCount())", "value": self.value}
        else:
            out["sum"] = {"value": self.value}
        return out


def _a(key: str) -> str:
    """An attribute path in the connector's span context (no context prefix there)."""
    return attr(key).removeprefix("span.")


def _numeric(key: str) -> str:
    return f"(IsInt({_a(key)}) or IsDouble({_a(key)}))"


# Spans this connector turns into metrics: priced (or marked unpriced/free) by the cost statements, and
# not made by llmtally itself, whose process exports its own metrics.
PRICED_ELSEWHERE: Final = (f"{_a(sc.LLMTALLY_COST_STATUS)} != nil and "
                           f"not IsMatch(instrumentation_scope.name, {ottl_string('^' + sc.INSTRUMENTATION_SCOPE)})")


def metric_definitions() -> list[MetricDef]:
    """The connector's metrics, named as llmtally's processor names them."""
    base = PRICED_ELSEWHERE
    token_desc = "Input and output tokens per LLM call"
    defs: list[MetricDef] = []
    for kind, key, older in ((sc.TokenType.INPUT, sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_PROMPT_TOKENS),
                             (sc.TokenType.OUTPUT, sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_USAGE_COMPLETION_TOKENS)):
        extra = ((sc.GEN_AI_TOKEN_TYPE, kind),)
        for condition, value in ((_numeric(key), f"Double({_a(key)})"),
                                 (f"not {_numeric(key)} and {_numeric(older)}", f"Double({_a(older)})"),
                                 (f"not {_numeric(key)} and not {_numeric(older)}", "0.0")):
            defs.append(MetricDef(sc.METRIC_TOKEN_USAGE, token_desc, sc.UNIT_TOKEN, "histogram", value,
                                  f"{base} and {condition}", extra, tuple(float(b) for b in sc.TOKEN_USAGE_BUCKETS)))
    duration = "Double(end_time_unix_nano - start_time_unix_nano) / 1000000000.0"
    defs.append(MetricDef(sc.METRIC_OPERATION_DURATION, "Duration of LLM calls", sc.UNIT_SECONDS, "histogram",
                          duration, base, buckets=sc.DURATION_BUCKETS))
    ttfc = sc.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
    defs.append(MetricDef(sc.METRIC_TIME_TO_FIRST_CHUNK, "Time to the first streamed chunk", sc.UNIT_SECONDS,
                          "histogram", f"Double({_a(ttfc)})", f"{base} and {_numeric(ttfc)}",
                          buckets=sc.DURATION_BUCKETS))
    amount = sc.GEN_AI_USAGE_COST_AMOUNT
    defs.append(MetricDef(sc.METRIC_OPERATION_COST, "Cost of priced LLM calls (its sum is spend)", sc.UNIT_USD,
                          "histogram", _a(amount), f"{base} and IsDouble({_a(amount)})", buckets=sc.COST_BUCKETS))
    # Disjoint token kinds, as llmtally.usage.Usage.leaves(): every value an int (the connector cannot
    # mix int and double values in one sum).
    tokens_desc = "Tokens by disjoint kind (uncached input, cache read, cache write, output, reasoning)"
    inp, cr, cw = sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, \
        sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
    out, rs = sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
    leaf = sc.LLMTALLY_TOKEN_KIND
    L = sc.TokenLeaf

    def has(key: str, present: bool) -> str:
        return _numeric(key) if present else f"not {_numeric(key)}"

    tokens: list[tuple[str, str, str]] = []
    for with_cr in (True, False):
        for with_cw in (True, False):
            value = (f"Int({_a(inp)})" + (f" - Int({_a(cr)})" if with_cr else "")
                     + (f" - Int({_a(cw)})" if with_cw else ""))
            tokens.append((L.UNCACHED_INPUT, f"{_numeric(inp)} and {has(cr, with_cr)} and {has(cw, with_cw)}", value))
    tokens.append((L.CACHE_READ, _numeric(cr), f"Int({_a(cr)})"))
    tokens.append((L.CACHE_WRITE, _numeric(cw), f"Int({_a(cw)})"))
    tokens.append((L.OUTPUT, f"{_numeric(out)} and {_numeric(rs)}", f"Int({_a(out)}) - Int({_a(rs)})"))
    tokens.append((L.OUTPUT, f"{_numeric(out)} and not {_numeric(rs)}", f"Int({_a(out)})"))
    tokens.append((L.REASONING, _numeric(rs), f"Int({_a(rs)})"))
    for kind, condition, value in tokens:
        defs.append(MetricDef(sc.METRIC_TOKENS_BY_KIND, tokens_desc, sc.UNIT_TOKEN, "sum", value,
                              f"{base} and {condition}", ((leaf, kind),)))
    defs.append(MetricDef(sc.METRIC_UNPRICED_CALLS, "LLM calls whose model has no known price", sc.UNIT_CALL, "sum",
                          "Int(AdjustedCount())",
                          f"{base} and {_a(sc.LLMTALLY_COST_STATUS)} == {ottl_string(sc.CostStatus.UNPRICED)}"))
    defs.append(MetricDef(sc.METRIC_ESTIMATED_CALLS, "LLM calls whose token counts are estimated", sc.UNIT_CALL,
                          "sum", "Int(AdjustedCount())", f"{base} and {_a(sc.LLMTALLY_USAGE_ESTIMATED)} == true"))
    return defs


def monotonic_statement() -> str:
    names = " or ".join(f"metric.name == {ottl_string(n)}" for n in MONOTONIC_METRICS)
    return f"set(metric.is_monotonic, true) where {names}"


def config_dict(program: CostProgram) -> dict[str, Any]:
    """The whole collector config (everything but the header comment)."""
    otlp_out = {"endpoint": "${env:LLMTALLY_GATEWAY_ENDPOINT:-otel-gateway:4317}", "tls": {"insecure": True},
                "compression": "gzip", "sending_queue": {"enabled": True, "queue_size": 5000},
                "retry_on_failure": {"enabled": True, "max_elapsed_time": "10m"}}
    return {
        "extensions": {"health_check": {"endpoint": "${env:LLMTALLY_HEALTH_ENDPOINT:-0.0.0.0:13133}"}},
        "receivers": {"otlp": {"protocols": {
            "grpc": {"endpoint": "${env:LLMTALLY_OTLP_GRPC_ENDPOINT:-0.0.0.0:4317}"},
            "http": {"endpoint": "${env:LLMTALLY_OTLP_HTTP_ENDPOINT:-0.0.0.0:4318}"}}}},
        "processors": {
            "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
            COST_PROCESSOR: {"error_mode": "ignore", "trace_statements": [
                {"conditions": list(program.conditions), "statements": list(program.statements)}]},
            "transform/llmtally_monotonic": {"error_mode": "ignore", "metric_statements": [monotonic_statement()]},
            # Its own processor: in one list with the metric statement above, the context would be the
            # metric and the append would run once per metric of the resource.
            SINGLE_WRITER: {"error_mode": "ignore", "metric_statements": list(SINGLE_WRITER_STATEMENTS)},
            "deltatocumulative": {"max_stale": "15m"},
            "batch": {"send_batch_size": 8192, "send_batch_max_size": 16384, "timeout": "1s"},
        },
        "connectors": {CONNECTOR: {"spans": [d.to_config() for d in metric_definitions()]}},
        "exporters": {"otlp/gateway": otlp_out},
        "service": {
            "extensions": _Flow(["health_check"]),
            "pipelines": {
                "traces": _pipeline(["otlp"], ["memory_limiter", COST_PROCESSOR, "batch"], ["otlp/gateway", CONNECTOR]),
                "metrics/llmtally": _pipeline([CONNECTOR], ["transform/llmtally_monotonic", SINGLE_WRITER,
                                                            "deltatocumulative", "batch"], ["otlp/gateway"]),
                "metrics": _pipeline(["otlp"], ["memory_limiter", "batch"], ["otlp/gateway"]),
                "logs": _pipeline(["otlp"], ["memory_limiter", "batch"], ["otlp/gateway"]),
            },
        },
    }


def _pipeline(receivers: list[str], processors: list[str], exporters: list[str]) -> dict[str, Any]:
    return {"receivers": _Flow(receivers), "processors": _Flow(processors), "exporters": _Flow(exporters)}


def header(program: CostProgram, selection: Selection) -> str:
    scope = []
    if selection.providers is not None:
        scope.append("--providers " + ",".join(program.providers))
    if selection.models is not None:
        scope.append("--models " + ",".join(selection.models))
    if selection.at is not None:
        scope.append(f"--at {selection.at.isoformat()}")
    command = " ".join(["llmtally collector-config", *scope])
    dated = (f"Prices in force on {selection.at.isoformat()} only." if isinstance(selection.at, date)
             else "Every dated price, chosen by each span's start time.")
    return "\n".join([
        f"# Generated by `{command}`",
        f"# from {program.catalog_version}. Do not edit by hand: regenerate it.",
        f"# Target: OpenTelemetry Collector Contrib v{COLLECTOR_VERSION} (otelcol-contrib).",
        "#",
        "# Cost enrichment for gen_ai spans from apps that do NOT use llmtally (any language). The",
        f"# {COST_PROCESSOR} statements set gen_ai.usage.cost.amount/currency/source, llmtally.cost.status and",
        "# llmtally.price.catalog/model exactly as llmtally's pricing engine would (unknown models: unpriced, no",
        "# amount); the signaltometrics connector turns them into llmtally's own metric names. Spans that",
        "# already carry a cost or a cost status (llmtally's own) are left alone and not counted again.",
        f"# {program.entries} priced models. {dated} gen_ai.provider.name values priced:",
        *textwrap.wrap(", ".join(program.providers), 100, initial_indent="#   ", subsequent_indent="#   "),
        "#",
        "#   LLMTALLY_GATEWAY_ENDPOINT=gateway:4317 otelcol-contrib --config cost-enrichment.yaml",
        "",
    ])


def render(program: CostProgram, selection: Selection) -> str:
    body = yaml.dump(config_dict(program), Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=False)
    return header(program, selection) + body
