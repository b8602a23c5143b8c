"""Which provider an endpoint belongs to, from its host name (pure; shared by instrumentors)."""

from __future__ import annotations

from urllib.parse import urlsplit

from llmtally import semconv as sc

# Exact hosts of OpenAI-compatible APIs. Suffix rules below cover per-resource hosts.
_HOSTS = {
    "api.openai.com": sc.Provider.OPENAI,
    "api.groq.com": sc.Provider.GROQ,
    "api.deepseek.com": sc.Provider.DEEPSEEK,
    "openrouter.ai": sc.Provider.OPENROUTER,
    "api.together.xyz": sc.Provider.TOGETHER,
    "api.together.ai": sc.Provider.TOGETHER,
    "api.fireworks.ai": sc.Provider.FIREWORKS,
    "api.x.ai": sc.Provider.X_AI,
    "api.mistral.ai": sc.Provider.MISTRAL_AI,
    "api.perplexity.ai": sc.Provider.PERPLEXITY,
    "api.anthropic.com": sc.Provider.ANTHROPIC,
    "generativelanguage.googleapis.com": sc.Provider.GCP_GEMINI,
    "api.cohere.com": sc.Provider.COHERE,
    "api.cohere.ai": sc.Provider.COHERE,
}
_SUFFIXES = (
    (".openai.azure.com", sc.Provider.AZURE_OPENAI),
    (".cognitiveservices.azure.com", sc.Provider.AZURE_OPENAI),
    (".services.ai.azure.com", sc.Provider.AZURE_OPENAI),
    (".openrouter.ai", sc.Provider.OPENROUTER),
    ("-aiplatform.googleapis.com", sc.Provider.GCP_VERTEX_AI),
    (".amazonaws.com", sc.Provider.AWS_BEDROCK),
)

# Hosts known to accept chat `stream_options.include_usage` (old Azure API versions reject it).
ACCEPTS_STREAM_USAGE = frozenset({"api.openai.com", "api.deepseek.com", "api.together.xyz", "api.together.ai",
                                  "api.fireworks.ai", "api.x.ai", "openrouter.ai", "api.groq.com"})


def provider_for_host(host: str | None, default: str = sc.Provider.OPENAI) -> str:
    """``gen_ai.provider.name`` for an API host; ``default`` for hosts we do not know (self-hosted)."""
    if not host:
        return default
    host = host.lower().rstrip(".")
    known = _HOSTS.get(host)
    if known is not None:
        return known
    for suffix, provider in _SUFFIXES:
        if host.endswith(suffix):
            return provider
    return default


def server_of(url: object) -> tuple[str | None, int | None]:
    """(``server.address``, ``server.port``) of an API base URL (a bare ``host[:port]`` reads as https): the
    scheme's default port when the URL names none; (None, None) without a host. Pure, never raises."""
    if not isinstance(url, str) or not url:
        return None, None
    parts = urlsplit(url if "://" in url else "https://" + url)
    host = parts.hostname
    if not host:
        return None, None
    try:
        port = parts.port
    except ValueError:  # not a number: the SDK will refuse the URL itself
        return host, None
    return host, port or (443 if parts.scheme == "https" else 80)
