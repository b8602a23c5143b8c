"""A trace processor for the rotel collector (PyPI ``rotel``) that prices gen_ai spans with llmtally.

rotel runs Python processors in an interpreter embedded in its Rust binary, loading this file by path
and calling :func:`process_spans` with each batch's ``ResourceSpans``::

    python -m llmtally.collector.rotel_processor     # prints the command line for this installation

    PYTHONPATH=<site-packages holding llmtally> rotel start \\
        --otlp-with-trace-processor <path of this file> --exporter otlp --otlp-exporter-endpoint ...

Spans that are inference calls without a cost get the cost attributes llmtally's own spans carry
(see :mod:`llmtally.collector.enrich`); every other span passes through untouched. The logic lives in
:func:`llmtally.collector.enrich.enrich_attributes`; this module only moves attributes in and out of
rotel's objects. Fail open: a span that cannot be read or written is left as it was and counted.

Written against rotel 0.0.1-alpha10 (the binary in PyPI ``rotel`` 0.0.1a15), whose processor SDK is
the ``rotel_sdk`` module that exists only inside the rotel process.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import sysconfig
from typing import Any

if __name__ not in ("llmtally.collector.rotel_processor", "__main__"):
    # Loaded by rotel as a plain file (module name rotel_processor_0, ...): its interpreter starts from the
    # system's sys.path. Make the installation holding this file importable, after the standard library
    # (never shadowing it).
    _root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if _root not in sys.path:
        _at = next((i for i, p in enumerate(sys.path) if p.endswith(("-packages", "-packages/"))), len(sys.path))
        sys.path.insert(_at, _root)

from opentelemetry.util.types import AttributeValue

from llmtally import semconv as sc
from llmtally.collector.enrich import Outcome, count, enrich_attributes, wanted
from llmtally.instrumentation._guard import report_internal_error
from llmtally.instrumentation.call import default_price_book

_LOADED_BY_ROTEL = __name__ not in ("llmtally.collector.rotel_processor", "__main__")
PROCESSOR_PATH = os.path.abspath(__file__)
_common: Any = None

if _LOADED_BY_ROTEL:
    # Load the price book (LLMTALLY_PRICE_FILES) and the bundled catalog now, when rotel loads this file:
    # a broken price file stops rotel at start, loudly, instead of leaving every span unpriced; and the
    # first batch does not wait for the catalog.
    _ = default_price_book().catalog


def process_spans(resource_spans: Any) -> None:
    """rotel's entry point: enrich the gen_ai spans of one ``ResourceSpans`` in place. Never raises."""
    try:
        batch = [(scope, list(scope.spans)) for scope in resource_spans.scope_spans]
    except Exception as exc:
        report_internal_error("collector.rotel.batch", exc)
        return
    # An app using llmtally may also have an SDK that traces itself (anthropic >= 2): that SDK's span
    # nests under llmtally's, which already carries the call's cost. Pricing it too would count the call
    # twice, so spans whose parent is an llmtally span in the same batch are left alone.
    llmtally_ids: set[bytes] = set()
    for scope, spans in batch:
        try:
            if scope.scope is not None and scope.scope.name.startswith(sc.INSTRUMENTATION_SCOPE):
                llmtally_ids.update(span.span_id for span in spans)
        except Exception as exc:
            report_internal_error("collector.rotel.scope", exc)
    for _, spans in batch:
        for span in spans:
            _process_span(span, llmtally_ids)


# rotel releases before 0.0.1-alpha10 called ``process``.
process = process_spans


def _process_span(span: Any, llmtally_ids: set[bytes]) -> None:
    try:
        if llmtally_ids and span.parent_span_id in llmtally_ids:
            count(Outcome.NESTED)
            return
        kvs = list(span.attributes)
        attrs: dict[str, object] = {}
        for kv in kvs:
            key = kv.key
            if wanted(key):
                value = kv.value
                attrs[key] = None if value is None else value.value
        added = enrich_attributes(attrs, at_ns=span.start_time_unix_nano)
        if not added:
            return
        # Build the whole new list first, then assign once: the span is either fully enriched or untouched.
        new = [kv for kv in kvs if kv.key not in added]
        new.extend(_key_value(key, value) for key, value in added.items())
        span.attributes = new
    except Exception as exc:
        count(Outcome.FAILED)
        report_internal_error("collector.rotel.span", exc)


def _key_value(key: str, value: AttributeValue) -> Any:
    global _common
    if _common is None:
        # Imported here: rotel_sdk exists only inside the rotel process.
        _common = importlib.import_module("rotel_sdk.open_telemetry.common.v1")
    kv = _common.KeyValue
    if isinstance(value, bool):  # before int: a bool is an int
        return kv.new_bool_value(key, value)
    if isinstance(value, int):
        return kv.new_int_value(key, value)
    if isinstance(value, float):
        return kv.new_double_value(key, value)
    if isinstance(value, str):
        return kv.new_string_value(key, value)
    raise TypeError(f"unsupported attribute value for {key}: {type(value).__name__}")


# --- running it ---------------------------------------------------------------------------------
def rotel_binary() -> str | None:
    """The rotel binary: the one bundled in the ``rotel`` wheel, else ``rotel`` on PATH."""
    try:
        spec = importlib.util.find_spec("rotel")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        bundled = os.path.join(os.path.dirname(spec.origin), "rotel-agent")
        if os.access(bundled, os.X_OK):
            return bundled
    return shutil.which("rotel")


def rotel_pythonpath() -> str:
    """PYTHONPATH for rotel's embedded interpreter: this environment's packages and llmtally itself."""
    paths = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
             os.path.dirname(os.path.dirname(os.path.dirname(PROCESSOR_PATH)))]
    return os.pathsep.join(dict.fromkeys(paths))


def main() -> None:
    binary = rotel_binary() or "rotel"
    print(f"PYTHONPATH={rotel_pythonpath()} {binary} start --otlp-with-trace-processor {PROCESSOR_PATH} "
          "--exporter otlp --otlp-exporter-endpoint <your OTLP endpoint>")


if __name__ == "__main__":  # pragma: no cover
    main()
