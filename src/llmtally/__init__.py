"""llmtally: exact token usage and cost for LLM calls, through OpenTelemetry."""

from llmtally._version import __version__

__all__ = ["__version__"]
