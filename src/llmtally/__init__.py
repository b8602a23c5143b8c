"""llmtally: exact token usage and cost for LLM calls, through OpenTelemetry.

The public API is small:

* :func:`configure` - providers, exporters, the usage processor and instrumentation in one call;
* :class:`attributes` - attribute calls to a user, tenant, session, conversation or feature;
* :class:`UsageSpanProcessor` - metrics and usage log records, for a hand-built OpenTelemetry setup;
* :class:`PriceBook`, :class:`Usage`, :class:`Cost` - pricing on its own.
"""

from llmtally._setup import Configuration, configure
from llmtally._version import __version__
from llmtally.context import attributes
from llmtally.pricing import Cost, PriceBook, PriceFileError
from llmtally.processor import UsageSpanProcessor
from llmtally.usage import Usage

__all__ = [
    "Configuration",
    "Cost",
    "PriceBook",
    "PriceFileError",
    "Usage",
    "UsageSpanProcessor",
    "__version__",
    "attributes",
    "configure",
]
