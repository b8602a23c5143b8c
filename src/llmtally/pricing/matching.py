"""Model-name matching rules: exact, then documented normalisations; never a loose substring.

A model name is looked up as itself first, then with these rules applied in order, each result
tried exactly against the price index:

1. canonical form: lower-case, surrounding white space removed, an AWS ARN reduced to its last path
   segment, an AWS geographic cross-region inference prefix (``us.``, ``eu.``, ``apac.``, ...) removed
   (those profiles cost what the in-region model costs). ``global.`` stays: global profiles have their
   own, lower prices for newer Claude models (Sonnet 4.5: $3 global, $3.30 regional per 1M input), and
   stripping it made catalog ids ``global.anthropic.X`` and ``anthropic.X`` collide; a ``global.`` name
   with no entry of its own is tried without the prefix right after itself;
2. provider prefix removed: ``models/`` (Gemini API), ``publishers/<p>/models/`` and
   ``projects/.../models/`` (Vertex), one leading ``<provider>/`` segment (LiteLLM, OpenRouter), and
   a Bedrock vendor prefix (``anthropic.``, ``meta.``, ...) for the vendor's own catalog;
   an OpenAI fine-tune ``ft:<base>:<org>:<name>:<id>`` becomes ``ft:<base>`` (fine-tune prices);
3. version and date suffixes removed, up to two (``-v1:0`` then ``-20241022``): ``-v<N>[:<N>]``,
   ``:<N>``, ``@<YYYYMMDD>``, ``@latest``, ``-latest``, ``-YYYY-MM-DD``, ``-YYYYMMDD``, ``-MM-YYYY``,
   ``-preview-MM-DD``, ``-YYMM``/``-MMDD`` (four digits) and ``-NNN`` (three digits).

So ``gpt-4o-mini-2024-07-18`` prices as ``gpt-4o-mini``, ``us.anthropic.claude-3-5-haiku-20241022-v1:0``
as Bedrock's Claude 3.5 Haiku, but ``gpt-4o-mini`` is never ``gpt-4o`` and ``gpt-4o-turbo`` (an unseen
variant) is unpriced.
"""

from __future__ import annotations

import re

_REGION_PREFIX = re.compile(r"^(?:us|eu|apac|jp|au|ca|us-gov)\.(?=[a-z])")
_GLOBAL_PREFIX = "global."
_PROVIDER_PREFIX = re.compile(
    r"^(?:models/|publishers/[^/]+/models/|projects/.+/models/|[a-z0-9_.-]+/"
    r"|(?:anthropic|meta|amazon|mistral|cohere|ai21|deepseek|writer|qwen|openai)\.(?=[a-z]))"
)
_SUFFIX = re.compile(
    r"(?:-v\d+(?::\d+)?|:\d+|@\d{8}|@latest|-latest|-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{2}-\d{4}"
    r"|-preview-\d{2}-\d{2}|-\d{4}|-\d{3})$"
)


def canonical(name: str) -> str:
    """The form both index names and looked-up names are compared in."""
    name = name.strip().lower()
    if name.startswith("arn:"):
        name = name.rsplit("/", 1)[-1]
    return _REGION_PREFIX.sub("", name, count=1)


def candidates(name: str) -> list[str]:
    """Names to try for ``name``, most specific first, without duplicates."""
    first = canonical(name)
    out = [first]
    stems = [first]
    if first.startswith(_GLOBAL_PREFIX) and len(first) > len(_GLOBAL_PREFIX):
        first = first[len(_GLOBAL_PREFIX):]  # the model's own entry when the global profile has none
        stems.append(first)
    if first.startswith("ft:"):
        base = first.split(":")[1]
        if base:
            stems.append("ft:" + base)
    stripped = _PROVIDER_PREFIX.sub("", first, count=1)
    if stripped and stripped != first:
        stems.append(stripped)
    for stem in stems:
        if stem not in out:
            out.append(stem)
        current = stem
        for _ in range(2):
            shorter = _SUFFIX.sub("", current, count=1)
            if not shorter or shorter == current:
                break
            current = shorter
            if current not in out:
                out.append(current)
    return out
