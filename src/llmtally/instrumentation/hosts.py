"""Which provider an endpoint belongs to, from its host name, and its server address and port (shared by
instrumentors; never raises)."""

from __future__ import annotations

from typing import Any
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


_servers: dict[str, tuple[str | None, int | None]] = {}


def server_of(url: object) -> tuple[str | None, int | None]:
    """(``server.address``, ``server.port``) of an API base URL (a bare ``host[:port]`` reads as https): the
    scheme's default port when the URL names none; (None, None) without a host. Never raises. The few base
    URLs of an app are parsed once (urlsplit costs microseconds on every call otherwise)."""
    if not isinstance(url, str) or not url:
        return None, None
    found = _servers.get(url)
    if found is None:
        found = _parse_server(url)
        if len(_servers) > 256:  # per-request URLs (ids in paths): keep the cache small
            _servers.clear()
        _servers[url] = found
    return found


def _parse_server(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url if "://" in url else "https://" + url)
    host = parts.hostname
    if not host:
        return None, None
    try:
        port = parts.port
    except ValueError:  # not a number: the SDK will refuse the URL itself
        return host, None
    return host, port or (443 if parts.scheme == "https" else 80)


_url_servers: dict[int, tuple[Any, str | None, int | None]] = {}


def server_of_url(url: Any) -> tuple[str | None, int | None]:
    """:func:`url_server` of a long-lived URL object (an SDK client's ``base_url``), read once per object."""
    cached = _url_servers.get(id(url))
    if cached is not None and cached[0] is url:  # the entry holds the object: its id is not reused meanwhile
        return cached[1], cached[2]
    result = url_server(url)
    if len(_url_servers) > 256:
        _url_servers.clear()
    _url_servers[id(url)] = (url, *result)
    return result


def url_server(url: Any) -> tuple[str | None, int | None]:
    """(``server.address``, ``server.port``) of an httpx-style URL object (``host``, ``port``, ``scheme``):
    the scheme's default port when it names none; (None, None) without a host."""
    host = getattr(url, "host", None)
    if not host:
        return None, None
    port = getattr(url, "port", None)
    if port is None:
        port = 443 if getattr(url, "scheme", "https") == "https" else 80
    return str(host), int(port)
