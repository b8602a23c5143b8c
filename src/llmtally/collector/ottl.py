"""OTTL statements that price gen_ai spans inside an OpenTelemetry Collector, generated from the price catalog.

For apps that do not use llmtally (any language): the collector's ``transform`` processor runs these
statements on every span and sets the same cost attributes llmtally's instrumentors set
(``gen_ai.usage.cost.amount`` / ``.currency`` / ``.source``, ``llmtally.cost.status``,
``llmtally.price.catalog`` / ``.model``), following the rules of :mod:`llmtally.collector.enrich` (the
rotel plugin's twin): inference operations only, never a span that already has a cost or a cost status,
an unknown model ``unpriced`` with no amount (never $0), a local model (Ollama) ``free``.

The statements reproduce the pricing engine, not an approximation of it:

* model names go through the same matching rules as :mod:`llmtally.pricing.matching` (canonical form,
  ``global.`` profile, fine-tune stem, provider prefix, up to two version/date suffixes), tried in the
  engine's order: the response model, then the request model (the other way round on Bedrock); for each,
  the catalog providers of ``gen_ai.provider.name`` in order; for each, every candidate name in order;
* token counts are read with the processor's fallbacks and clamped as :meth:`llmtally.usage.Usage.build`
  clamps them, then priced per disjoint leaf with the engine's rate fallbacks (cache read/write -> input,
  1-hour cache write -> cache write, reasoning -> output); a leaf with tokens but no rate is ``unpriced``;
* dated prices become conditions on the span's start time, off-peak windows conditions on its time of
  day, long-context tiers conditions on input tokens, and ``service_tier`` variants (``flex``,
  ``priority``, ...) conditions on ``openai.response.service_tier`` / ``openai.request.service_tier``.

Precision: OTTL arithmetic is IEEE-754 double. An amount is ``(r1 * n1 + ... + rk * nk) / 1000000.0``
with the catalog's USD-per-1M rates as decimal literals and the token counts (exact integers, leaves that
share a rate summed first, exactly) as doubles: at most 18 roundings of non-negative terms, so within
2e-15 relative of the exact Decimal amount (llmtally's own spans carry ``float(Decimal)``, one rounding).
The exact decimal string and the per-leaf breakdown that llmtally's own spans carry are not produced.

Only functions that have been in OTTL for many releases are used: ``set``, ``replace_pattern``,
``ConvertCase``, ``Double``, ``IsString``, ``IsMatch``, ``Concat``, ``ExtractPatterns``. The one ``$`` (a
replacement's group reference) is written ``$$``, as the collector's config loader requires.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Final

from llmtally import semconv as sc
from llmtally.collector.enrich import INFERENCE_OPERATIONS
from llmtally.pricing import matching
from llmtally.pricing.catalog import PROVIDER_IDS, Catalog
from llmtally.pricing.engine import LOCAL_CATALOG, LOCAL_PROVIDERS, STANDARD_SERVICE_TIERS, request_model_first
from llmtally.pricing.model import ModelPricing, PricePeriod, Rates, Tier

COLLECTOR_VERSION: Final = "0.136.0"
"""The otelcol-contrib release every config in collector-config/ targets (component keys checked against it)."""

# The cache name of each token count (a Usage field of semconv.SPAN_USAGE_SOURCES, the table the processor
# and the collector plugin read), with the keys it is read from (the first key present wins).
_CACHE_NAMES: Final = {"input_tokens": "in", "output_tokens": "out", "cache_read_tokens": "cr",
                       "cache_write_tokens": "cw", "cache_write_1h_tokens": "cw1h", "reasoning_tokens": "rs"}
TOKEN_SOURCES: Final = tuple((_CACHE_NAMES[field], keys) for field, keys in sc.SPAN_USAGE_SOURCES)
# The engine prices these tiers as no tier (sorted: the generated text must not depend on set order).
_STANDARD_TIERS: Final = tuple(sorted(STANDARD_SERVICE_TIERS))
_NS_PER_DAY: Final = 86_400_000_000_000
_SEP: Final = "\n"  # joins a model's candidate names for one regex lookup; a name never contains it
_LEAVES: Final = ("u", "cr", "c5", "cw1h", "v", "rs")  # uncached, cache read, 5m/1h cache write, output, reasoning
_SLOTS: Final = ("S", "S1", "S2", "G", "G1", "G2", "F", "F1", "F2", "P", "P1", "P2")
_WS: Final = "[ \\t\\n\\r\\f\\v]"


@dataclass(frozen=True, slots=True)
class Selection:
    """What to generate statements for."""

    providers: tuple[str, ...] | None = None
    """``gen_ai.provider.name`` values; None: every provider llmtally maps to catalog providers."""
    models: tuple[str, ...] | None = None
    """Shell patterns over catalog model ids (``gpt-4o*``); None: every model. Others are unpriced."""
    at: date | None = None
    """Only the prices in force on this day (a smaller file, right until the catalog's next change);
    None: every dated price, each guarded by the span's start time."""


@dataclass(frozen=True, slots=True)
class CostProgram:
    """One transform-processor statement group: its global conditions and its statements, in order."""

    conditions: tuple[str, ...]
    statements: tuple[str, ...]
    catalog_version: str
    providers: tuple[str, ...]
    entries: int
    """Priced catalog entries the statements know."""


# --- OTTL text ------------------------------------------------------------------------------------
def ottl_string(text: str, *, dollars: bool = False) -> str:
    """``text`` as an OTTL string literal (OTTL unquotes like Go's strconv.Unquote).

    A ``$`` would be expanded as an environment variable by the collector's config loader: refused,
    unless ``dollars`` (a replacement's ``$1``), then escaped as the loader expects (``$$``)."""
    if ("$" in text and not dollars) or any(ord(ch) < 0x20 for ch in text):
        raise ValueError(f"cannot write {text!r} into a collector config")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'


def regex_literal(pattern: str) -> str:
    """An RE2 pattern as an OTTL string literal (backslashes doubled once, for the OTTL unquoting)."""
    return ottl_string(pattern)


_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def regex_escape(text: str) -> str:
    return _RE2_SPECIAL.sub(r"\\\1", text)


def number(value: Decimal | int) -> str:
    """A decimal OTTL float literal (OTTL float literals have no exponent form)."""
    text = format(Decimal(value).normalize(), "f")
    return text if "." in text else text + ".0"


def attr(key: str) -> str:
    return f"span.attributes[{ottl_string(key)}]"


def cache(key: str) -> str:
    return f"span.cache[{ottl_string(key)}]"


def _stmt(call: str, *conditions: str) -> str:
    conds = [c for c in conditions if c]
    return f"{call} where {' and '.join(conds)}" if conds else call


def _any(*conditions: str) -> str:
    return conditions[0] if len(conditions) == 1 else "(" + " or ".join(conditions) + ")"


def _has_text(key: str) -> str:
    return f"(IsString({attr(key)}) and {attr(key)} != \"\")"


# --- the RE2 forms of llmtally.pricing.matching's rules (RE2 has no look-ahead) --------------------
def _split_lookahead(pattern: str) -> tuple[str, str]:
    """``^X(?=[a-z])`` -> (a pattern that tests X and the letter after it, the pattern that removes X)."""
    look = "(?=[a-z])"
    if pattern.count("(?=") != pattern.count(look):
        raise ValueError(f"unsupported look-ahead in {pattern!r}")
    return pattern.replace(look, "[a-z]"), pattern.replace(look, "")


def _top_level_alternatives(group: str) -> list[str]:
    """The alternatives of ``(?:a|b|...)``, split at depth 0."""
    if not (group.startswith("(?:") and group.endswith(")")):
        raise ValueError(f"expected a non-capturing group: {group!r}")
    body, parts, depth, start, i, in_class = group[3:-1], [], 0, 0, 0, False
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
        i += 1
    parts.append(body[start:])
    return parts


def _matching_patterns() -> dict[str, str]:
    region_match, region_strip = _split_lookahead(matching._REGION_PREFIX.pattern)
    prefix = matching._PROVIDER_PREFIX.pattern
    if not prefix.startswith("^"):
        raise ValueError("provider prefix pattern must be anchored")
    plain: list[str] = []
    looking: list[str] = []
    for alternative in _top_level_alternatives(prefix[1:]):
        (looking if "(?=" in alternative else plain).append(alternative)
    if any("(?=" in a for a in plain) or not plain or not looking:
        raise ValueError(f"unexpected provider prefix pattern {prefix!r}")
    # Python tries the alternatives in order; all the look-ahead ones come last, so "plain first,
    # then the look-ahead ones" is the same choice.
    if prefix[1:].index(looking[0]) < max(prefix[1:].index(a) for a in plain):
        raise ValueError(f"look-ahead alternatives must come last in {prefix!r}")
    vendor_match, vendor_strip = _split_lookahead("^(?:" + "|".join(looking) + ")")
    suffix = matching._SUFFIX.pattern
    if not suffix.endswith("$"):
        raise ValueError("suffix pattern must be anchored at the end")
    return {
        "region_match": region_match, "region_strip": region_strip,
        "prefix": "^(?:" + "|".join(plain) + ")",
        "vendor_match": vendor_match, "vendor_strip": vendor_strip,
        "suffix": suffix[:-1] + "\\z",  # RE2's end of text; "$" cannot appear in a collector config
    }


def _candidate_statements(model_key: str, tag: str, patterns: dict[str, str]) -> list[str]:
    """Statements that put the candidate names of ``model_key`` (matching.candidates, same order) into
    cache slots ``<tag>S`` ... ``<tag>P2`` and join them into ``<tag>c``."""
    c = {slot: cache(tag + slot) for slot in _SLOTS}
    out = [f"set({c[slot]}, \"\")" for slot in _SLOTS]
    out.append(_stmt(f"set({c['S']}, {attr(model_key)})", _has_text(model_key),
                     f"not IsMatch({attr(model_key)}, {regex_literal(chr(92) + 'n')})"))
    # canonical(): strip, lower-case, ARN to its last segment, geographic cross-region prefix removed
    out.append(f"replace_pattern({c['S']}, {regex_literal(f'^{_WS}+|{_WS}+' + chr(92) + 'z')}, \"\")")
    out.append(f"set({c['S']}, ConvertCase({c['S']}, \"lower\"))")
    out.append(f"replace_pattern({c['S']}, {regex_literal('^arn:.*/')}, \"\")")
    out.append(_stmt(f"replace_pattern({c['S']}, {regex_literal(patterns['region_strip'])}, \"\")",
                     f"IsMatch({c['S']}, {regex_literal(patterns['region_match'])})"))

    def suffixes(stem: str) -> list[str]:
        first, second = c[stem + "1"], c[stem + "2"]
        strip = regex_literal(patterns["suffix"])
        return [f"set({first}, {c[stem]})", f"replace_pattern({first}, {strip}, \"\")",
                f"set({second}, {first})", f"replace_pattern({second}, {strip}, \"\")"]

    out += suffixes("S")
    first = cache(tag + "X")  # candidates()'s "first": the name without a global. profile prefix, if any
    out.append(f"set({first}, {c['S']})")
    global_prefix: str | None = getattr(matching, "_GLOBAL_PREFIX", None)
    if global_prefix:
        g = regex_escape(global_prefix)
        out.append(_stmt(f"set({c['G']}, {c['S']})", f"IsMatch({c['S']}, {regex_literal('^' + g + '.')})"))
        out.append(f"replace_pattern({c['G']}, {regex_literal('^' + g)}, \"\")")
        out.append(_stmt(f"set({first}, {c['G']})", f"{c['G']} != \"\""))
        out += suffixes("G")
    # a fine-tune ft:<base>:<org>:<name>:<id> is also tried as ft:<base>
    out.append(_stmt(f"set({c['F']}, {first})", f"IsMatch({first}, {regex_literal('^ft:[^:]')})"))
    out.append(f"replace_pattern({c['F']}, {regex_literal('^ft:([^:]*).*')}, {ottl_string('ft:$1', dollars=True)})")
    out += suffixes("F")
    plain = f"IsMatch({first}, {regex_literal(patterns['prefix'])})"
    vendor = f"IsMatch({first}, {regex_literal(patterns['vendor_match'])})"
    out.append(_stmt(f"set({c['P']}, {first})", _any(plain, vendor)))
    out.append(_stmt(f"replace_pattern({c['P']}, {regex_literal(patterns['prefix'])}, \"\")", plain))
    out.append(_stmt(f"replace_pattern({c['P']}, {regex_literal(patterns['vendor_strip'])}, \"\")",
                     f"not {plain}", vendor))
    out += suffixes("P")
    joined = ", ".join(c[slot] for slot in _SLOTS)
    out.append(f"set({cache(tag + 'c')}, Concat([{joined}], \"\\n\"))")
    return out


# --- prices -----------------------------------------------------------------------------------------
def _leaf_rates(rates: Rates) -> list[tuple[str, Decimal | None]]:
    """USD per 1M tokens for each leaf, with the engine's fallbacks."""
    f = rates.with_fallbacks()
    return list(zip(_LEAVES, (f.input, f.cache_read, f.cache_write, f.cache_write_1h, f.output, f.reasoning),
                    strict=True))


def _rate_statements(entry_id: str, rates: Rates, conditions: Sequence[str]) -> list[str]:
    """Set ``cache amount`` from ``rates`` when ``conditions`` pick this rate set; -1 (unpriced) when a
    leaf with tokens has no rate, as the engine does."""
    selected = [f"{cache('amount')} == nil", f"{cache('entry')} == {ottl_string(entry_id)}", *conditions]
    leaves = _leaf_rates(rates)
    out = []
    missing = [leaf for leaf, rate in leaves if rate is None]
    if missing:
        out.append(_stmt(f"set({cache('amount')}, -1.0)", *selected,
                         _any(*(f"{cache(leaf)} > 0.0" for leaf in missing))))
    # Leaves that share a rate are summed first: integer sums below 2**53 are exact in a double, so
    # fewer roundings (and a shorter statement). No rate, or a zero rate: no term.
    by_rate: dict[Decimal, list[str]] = {}
    for leaf, rate in leaves:
        if rate:
            by_rate.setdefault(rate, []).append(cache(leaf))
    terms = [f"{number(rate)} * {counts[0]}" if len(counts) == 1 else f"{number(rate)} * ({' + '.join(counts)})"
             for rate, counts in by_rate.items()]
    amount = f"({' + '.join(terms)}) / 1000000.0" if terms else "0.0"
    out.append(_stmt(f"set({cache('amount')}, {amount})", *selected))
    return out


def _tiered(entry_id: str, rates: Rates, tiers: Sequence[Tier], conditions: Sequence[str]) -> list[str]:
    out = []
    for tier in reversed(tiers):  # the highest threshold the call's input exceeds prices every token
        above = f"{cache('in')} > {number(tier.above_input_tokens)}"
        out += _rate_statements(entry_id, tier.rates, [*conditions, above])
    return out + _rate_statements(entry_id, rates, conditions)


def _ns(day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=timezone.utc).timestamp()) * 1_000_000_000


def _tod_ns(moment: time) -> int:
    offset = moment.utcoffset()
    if offset:
        raise ValueError(f"off-peak window not in UTC: {moment}")
    return ((moment.hour * 60 + moment.minute) * 60 + moment.second) * 1_000_000_000 + moment.microsecond * 1000


def _window(window: tuple[time, time]) -> str:
    start, end = _tod_ns(window[0]), _tod_ns(window[1])
    tod = cache("tod")
    if start <= end:
        return f"{tod} >= {start} and {tod} < {end}"
    return f"({tod} >= {start} or {tod} < {end})"


def _tier_variant_condition(when: tuple[tuple[str, str], ...]) -> str | None:
    """The condition under which the engine applies a variant for a call with a service tier; None when
    it never applies (the engine's context has only ``service_tier``)."""
    if any(key != "service_tier" for key, _ in when):
        return None
    if not when:
        return f"{cache('tier')} != nil"
    return " and ".join(f"{cache('tier')} == {ottl_string(value)}" for _, value in when)


def _entry_statements(pricing: ModelPricing, at: date | None) -> list[str]:
    """The rate sets of one catalog entry in the engine's order of choice: the last active period
    (by start date and time of day), then the first matching service-tier variant, then the tier."""
    entry_id = f"{pricing.provider}/{pricing.model}"
    chosen: list[tuple[PricePeriod, list[str]]] = []
    for period in reversed(pricing.periods):
        if at is not None and period.start is not None and period.start > at:
            continue
        conditions = []
        if at is None and period.start is not None:
            conditions.append(f"span.start_time_unix_nano >= {_ns(period.start)}")
        if period.daily_window is not None:
            conditions.append(_window(period.daily_window))
        chosen.append((period, conditions))
        if not conditions:
            break
    else:
        chosen.append((pricing.periods[0], []))  # the engine's choice when no period is active
    out = []
    for period, conditions in chosen:
        for variant in pricing.variants:
            when = _tier_variant_condition(variant.when)
            if when is None or (at is not None and variant.start is not None and variant.start > at):
                continue
            extra = [when]
            if at is None and variant.start is not None:
                extra.append(f"span.start_time_unix_nano >= {_ns(variant.start)}")
            # A flat variant price replaces that rate in the base rates and at every tier.
            tiers = [Tier(t.above_input_tokens, t.rates.merged(variant.rates)) for t in period.tiers]
            out += _tiered(entry_id, period.rates.merged(variant.rates), tiers, [*conditions, *extra])
        out += _tiered(entry_id, period.rates, period.tiers, conditions)
    return out


# --- catalog selection ------------------------------------------------------------------------------
def select_catalog(catalog: Catalog, models: Sequence[str] | None) -> Catalog:
    """``catalog`` with only the entries whose model id matches one of the shell patterns."""
    if models is None:
        return catalog
    patterns = [m.strip().lower() for m in models if m.strip()]

    def keep(entry: ModelPricing) -> bool:
        return any(fnmatch.fnmatchcase(entry.model.lower(), p) for p in patterns)

    index = {pid: {name: e for name, e in names.items() if keep(e)} for pid, names in catalog.index.items()}
    return Catalog(version=catalog.version, index={pid: names for pid, names in index.items() if names})


def default_providers() -> tuple[str, ...]:
    """Every ``gen_ai.provider.name`` llmtally maps to catalog providers, but OpenRouter: its 760 models
    would double the statements, its responses carry their own cost, and instrumentations of the OpenAI
    SDK report ``openai`` for it anyway (``--providers`` adds it)."""
    return tuple(p for p in PROVIDER_IDS if p != sc.Provider.OPENROUTER)


def provider_ids(catalog: Catalog, provider: str) -> tuple[str, ...]:
    """Catalog providers searched for ``gen_ai.provider.name`` ``provider``, in the engine's order."""
    return tuple(pid for pid in catalog.provider_ids(provider) if pid in catalog.index)


def _entries(names: dict[str, ModelPricing]) -> list[tuple[ModelPricing, list[str]]]:
    grouped: dict[int, tuple[ModelPricing, list[str]]] = {}
    for name, entry in names.items():
        grouped.setdefault(id(entry), (entry, []))[1].append(name)
    return sorted(((e, sorted(n)) for e, n in grouped.values()), key=lambda item: (item[0].provider, item[0].model))


# --- the program ------------------------------------------------------------------------------------
def cost_program(catalog: Catalog, selection: Selection | None = None) -> CostProgram:
    """The statement group that prices gen_ai spans with ``catalog`` (pure: same input, same text)."""
    selection = selection or Selection()
    catalog = select_catalog(catalog, selection.models)
    providers = tuple(sorted({p.strip().lower() for p in (selection.providers or default_providers())}))
    for provider in providers:
        if provider not in PROVIDER_IDS and provider not in catalog.index and provider not in LOCAL_PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}: not a gen_ai.provider.name llmtally maps to the "
                             f"catalog, nor a catalog provider id")
    lookups = {p: provider_ids(catalog, p) for p in providers}
    used_pids = sorted({pid for ids in lookups.values() for pid in ids})
    entries: dict[int, ModelPricing] = {}
    for pid in used_pids:
        for entry, _ in _entries(catalog.index[pid]):
            entries.setdefault(id(entry), entry)
    ordered = sorted(entries.values(), key=lambda e: (e.provider, e.model))
    entry_ids = [f"{e.provider}/{e.model}" for e in ordered]
    if len(set(entry_ids)) != len(entry_ids):
        raise ValueError("two catalog entries share a provider and model id: statements could not tell them apart")
    needs_tier = any(_tier_variant_condition(v.when) is not None for e in ordered for v in e.variants)
    needs_tod = any(p.daily_window is not None for e in ordered for p in e.periods)

    conditions = (" and ".join([
        f"{attr(sc.GEN_AI_USAGE_COST_AMOUNT)} == nil", f"{attr(sc.LLMTALLY_COST_STATUS)} == nil",
        _any(*(f"{attr(sc.GEN_AI_OPERATION_NAME)} == {ottl_string(op)}" for op in sorted(INFERENCE_OPERATIONS))),
        _any(_has_text(sc.GEN_AI_REQUEST_MODEL), _has_text(sc.GEN_AI_RESPONSE_MODEL)),
        _any(*(f"{attr(key)} != nil" for key in sc.SPAN_USAGE_KEYS)),
    ]),)

    out: list[str] = []
    # provider: gen_ai.provider.name, else the older gen_ai.system, lower-cased
    out.append(_stmt(f"set({cache('p')}, ConvertCase({attr(sc.GEN_AI_PROVIDER_NAME)}, \"lower\"))",
                     _has_text(sc.GEN_AI_PROVIDER_NAME)))
    out.append(_stmt(f"set({cache('p')}, ConvertCase({attr(sc.GEN_AI_SYSTEM)}, \"lower\"))",
                     f"{cache('p')} == nil", _has_text(sc.GEN_AI_SYSTEM)))
    # token counts as doubles (OTTL math never mixes int and double), clamped as Usage.build does
    for key, sources in TOKEN_SOURCES:
        for i, source in enumerate(sources):
            absent = [f"{attr(earlier)} == nil" for earlier in sources[:i]]
            out.append(_stmt(f"set({cache(key)}, Double({attr(source)}))", *absent))
        out.append(_stmt(f"set({cache('clamped')}, true)", f"{cache(key)} == nil",
                         _any(*(f"{attr(source)} != nil" for source in sources))))
        out.append(_stmt(f"set({cache('clamped')}, true)", f"{cache(key)} < 0.0"))
        out.append(_stmt(f"set({cache(key)}, 0.0)", _any(f"{cache(key)} == nil", f"{cache(key)} < 0.0")))

    def at_most(key: str, limit: str, flag: bool = True) -> list[str]:
        stmts = [_stmt(f"set({cache('clamped')}, true)", f"{cache(key)} > {cache(limit)}")] if flag else []
        return [*stmts, _stmt(f"set({cache(key)}, {cache(limit)})", f"{cache(key)} > {cache(limit)}")]

    out += at_most("cw1h", "cw")
    out += at_most("cr", "in")
    out.append(f"set({cache('room')}, {cache('in')} - {cache('cr')})")
    out += at_most("cw", "room")
    out += at_most("cw1h", "cw", flag=False)
    out += at_most("rs", "out")
    out.append(f"set({cache('u')}, {cache('in')} - {cache('cr')} - {cache('cw')})")
    out.append(f"set({cache('c5')}, {cache('cw')} - {cache('cw1h')})")
    out.append(f"set({cache('v')}, {cache('out')} - {cache('rs')})")
    if needs_tier:
        # The served tier prices the call (a standard one: no tier); the requested one only when the response
        # names none (pricing.spans.span_service_tier).
        for i, key in enumerate((sc.OPENAI_RESPONSE_SERVICE_TIER, sc.OPENAI_REQUEST_SERVICE_TIER)):
            standard = [f"{attr(key)} != {ottl_string(t)}" for t in _STANDARD_TIERS]
            served = [f"not {_has_text(sc.OPENAI_RESPONSE_SERVICE_TIER)}"] if i else []
            out.append(_stmt(f"set({cache('tier')}, {attr(key)})", *served, _has_text(key), *standard))
    if needs_tod:
        t = "span.start_time_unix_nano"
        out.append(f"set({cache('tod')}, {t} - ({t} / {_NS_PER_DAY}) * {_NS_PER_DAY})")

    # candidate names, then the first (response model, then request model) x (catalog provider) x
    # (candidate) that the catalog knows
    patterns = _matching_patterns()
    tags = (("r", sc.GEN_AI_RESPONSE_MODEL), ("q", sc.GEN_AI_REQUEST_MODEL))
    for tag, key in tags:
        out += _candidate_statements(key, tag, patterns)
    # Providers that search the same catalog providers in the same model order share statements.
    by_ids: dict[tuple[tuple[str, ...], tuple[str, str]], list[str]] = {}
    for provider in providers:
        if lookups[provider]:
            order = ("q", "r") if request_model_first(provider) else ("r", "q")
            by_ids.setdefault((lookups[provider], order), []).append(provider)
    for (ids, order), group in by_ids.items():
        is_provider = _any(*(f"{cache('p')} == {ottl_string(p)}" for p in group))
        for tag in order:
            for pid in ids:
                names = sorted(catalog.index[pid])
                lookup = ("(?:^|\\n)(?P<hit>" + "|".join(regex_escape(n) for n in names) + ")(?:\\n|\\z)")
                out.append(_stmt(f"set({cache('hit')}, ExtractPatterns({cache(tag + 'c')}, {regex_literal(lookup)})"
                                 f"[\"hit\"])", f"{cache('hit')} == nil", is_provider))
                out.append(_stmt(f"set({cache('pid')}, {ottl_string(pid)})", f"{cache('pid')} == nil",
                                 f"{cache('hit')} != nil"))
    for pid in used_pids:
        for entry, names in _entries(catalog.index[pid]):
            out.append(_stmt(f"set({cache('entry')}, {ottl_string(f'{entry.provider}/{entry.model}')})",
                             f"{cache('pid')} == {ottl_string(pid)}",
                             _any(*(f"{cache('hit')} == {ottl_string(n)}" for n in names))))
    for entry in ordered:
        out += _entry_statements(entry, selection.at)

    # local models with no price: explicitly free (amount 0), never unpriced
    local = _any(*(f"{cache('p')} == {ottl_string(p)}" for p in sorted(LOCAL_PROVIDERS)))
    out.append(_stmt(f"set({cache('free')}, true)", f"{cache('entry')} == nil", local))
    out.append(_stmt(f"set({cache('amount')}, 0.0)", f"{cache('free')} == true"))
    priced = f"{cache('amount')} >= 0.0"
    out.append(_stmt(f"set({attr(sc.GEN_AI_USAGE_COST_AMOUNT)}, {cache('amount')})", priced))
    out.append(_stmt(f"set({attr(sc.GEN_AI_USAGE_COST_CURRENCY)}, {ottl_string(sc.COST_CURRENCY_USD)})", priced))
    out.append(_stmt(f"set({attr(sc.GEN_AI_USAGE_COST_SOURCE)}, {ottl_string(sc.CostSource.LOCAL)})", priced))
    out.append(_stmt(f"set({attr(sc.LLMTALLY_COST_STATUS)}, {ottl_string(sc.CostStatus.FREE)})",
                     f"{cache('free')} == true"))
    out.append(_stmt(f"set({attr(sc.LLMTALLY_COST_STATUS)}, {ottl_string(sc.CostStatus.PRICED)})", priced,
                     f"{cache('free')} == nil"))
    out.append(_stmt(f"set({attr(sc.LLMTALLY_COST_STATUS)}, {ottl_string(sc.CostStatus.UNPRICED)})",
                     f"{attr(sc.LLMTALLY_COST_STATUS)} == nil"))
    out.append(_stmt(f"set({attr(sc.LLMTALLY_PRICE_CATALOG)}, {ottl_string(LOCAL_CATALOG)})",
                     f"{cache('free')} == true"))
    out.append(_stmt(f"set({attr(sc.LLMTALLY_PRICE_CATALOG)}, {ottl_string(catalog.version)})",
                     f"{cache('free')} == nil"))
    out.append(_stmt(f"set({attr(sc.LLMTALLY_PRICE_MODEL)}, {cache('entry')})", f"{cache('entry')} != nil"))
    out.append(_stmt(f"replace_pattern({attr(sc.LLMTALLY_PRICE_MODEL)}, {regex_literal('^[^/]*/')}, \"\")",
                     f"{cache('entry')} != nil"))
    out.append(_stmt(f"set({attr(sc.LLMTALLY_USAGE_CLAMPED)}, true)", f"{cache('clamped')} == true"))
    return CostProgram(conditions=conditions, statements=tuple(out), catalog_version=catalog.version,
                       providers=providers, entries=len(ordered))


def names_of(items: Iterable[str]) -> tuple[str, ...]:
    """Comma-separated CLI values as a tuple, blanks dropped."""
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())
