"""llmtally: exact token usage and cost for LLM calls, through OpenTelemetry."""

from llmtally._version import __version__
from llmtally.pricing import Cost, PriceBook, PriceFileError
from llmtally.usage import Usage

__all__ = ["Cost", "PriceBook", "PriceFileError", "Usage", "__version__"]
