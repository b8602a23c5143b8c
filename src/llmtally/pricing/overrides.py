"""User price override files (TOML or YAML): own prices, negotiated multipliers, name aliases.

The same structure in either format; prices are USD per 1M tokens, read as exact decimals::

    # prices.toml
    [[models]]
    provider = "openai"            # gen_ai.provider.name; omit to match any provider
    name = "gpt-4o-mini"           # the model name calls report
    input = 0.15
    output = 0.60
    cache_read = 0.075
    effective_from = 2025-01-01    # optional: a later entry for the same model takes over on its date

    [[models.tiers]]               # optional long-context tier: all tokens of a call above it
    above_input_tokens = 200000
    input = 0.30
    output = 1.20

    [multipliers]                  # applied to the bundled catalog's prices of that provider
    openai = 0.8                   # pay 80% of list price

    [aliases]                      # exact names (deployments, fine-tunes) -> a priced model
    "prod-chat" = "gpt-4o-mini"
    "ft:gpt-4o-mini:acme::9xk2" = { model = "gpt-4o-mini", provider = "openai" }

A file that cannot be read, parsed or validated raises :class:`PriceFileError` naming the file, the
line and the key, at load time: a broken price file must never silently price calls at $0.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from llmtally.pricing.matching import canonical
from llmtally.pricing.model import RATE_FIELDS, ModelPricing, PricePeriod, Rates, Tier

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_MODEL_KEYS = frozenset({"provider", "name", "effective_from", "tiers", *RATE_FIELDS})
_TIER_KEYS = frozenset({"above_input_tokens", *RATE_FIELDS})
_TOP_KEYS = frozenset({"models", "multipliers", "aliases"})


class PriceFileError(ValueError):
    """A price override file is unreadable or invalid."""

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path, self.line, self.key, self.message = path, line, key, message
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


AliasKey = tuple[str | None, str]


@dataclass(frozen=True)
class Overrides:
    """Parsed override files, merged in the order given (later files win)."""

    models: dict[AliasKey, ModelPricing] = field(default_factory=dict)
    """(provider or None for any, canonical name) -> pricing."""
    aliases: dict[AliasKey, AliasKey] = field(default_factory=dict)
    """(provider or None, canonical name) -> (target provider or None, target name)."""
    multipliers: dict[str, Decimal] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def merged(self, other: Overrides) -> Overrides:
        return Overrides(
            models={**self.models, **other.models},
            aliases={**self.aliases, **other.aliases},
            multipliers={**self.multipliers, **other.multipliers},
            sources=self.sources + other.sources,
        )


def load_overrides(*paths: str | Path) -> Overrides:
    result = Overrides()
    for path in paths:
        result = result.merged(load_override_file(path))
    return result


def load_override_file(path: str | Path) -> Overrides:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceFileError(name, None, None, f"cannot read: {exc}") from None
    if name.endswith((".yaml", ".yml")):
        data, locate = _parse_yaml(name, text)
    elif name.endswith(".toml"):
        data, locate = _parse_toml(name, text)
    else:
        raise PriceFileError(name, None, None, "unknown format: use a .toml, .yaml or .yml file")
    return _Validator(name, locate).overrides(data)


# --- parsing with line lookup ------------------------------------------------------------------------

Locator = Any  # (path: tuple[str | int, ...]) -> int | None


def _parse_toml(name: str, text: str) -> tuple[Any, Locator]:
    try:
        data = tomllib.loads(text, parse_float=Decimal)  # exact prices, no binary floats
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise PriceFileError(name, int(match.group(1)) if match else None, None,
                             f"invalid TOML: {exc}") from None
    return data, _TomlLocator(text)


class _TomlLocator:
    """Finds the line of a key path in TOML text (tomllib keeps no positions)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def __call__(self, path: tuple[str | int, ...]) -> int | None:
        # Walk headers: [[models]] occurrences are indexed, [[models.tiers]] are counted per model.
        start, end = 0, len(self.lines)
        if len(path) >= 2 and path[0] == "models" and isinstance(path[1], int):
            span = self._nth_table(r"\[\[\s*models\s*\]\]", path[1], start, end)
            if span is None:
                return None
            start, end = span
            if len(path) >= 4 and path[2] == "tiers" and isinstance(path[3], int):
                span = self._nth_table(r"\[\[\s*models\.tiers\s*\]\]", path[3], start, end)
                if span is None:
                    return start + 1
                start, end = span
                path = path[4:]
            else:
                path = path[2:]
        elif path and path[0] in ("multipliers", "aliases"):
            span = self._nth_table(rf"\[\s*{path[0]}\s*\]", 0, start, end)
            if span is not None:
                start, end = span
                path = path[1:]
        key = next((p for p in path if isinstance(p, str)), None)
        if key is not None:
            pattern = re.compile(rf'^\s*"?{re.escape(key)}"?\s*=')
            for i in range(start, end):
                if pattern.match(self.lines[i]):
                    return i + 1
        return start + 1 if start < len(self.lines) else None

    def _nth_table(self, header: str, n: int, start: int, end: int) -> tuple[int, int] | None:
        rx = re.compile(rf"^\s*{header}\s*(#.*)?$")
        any_header = re.compile(r"^\s*\[")
        count = -1
        for i in range(start, end):
            if rx.match(self.lines[i]):
                count += 1
                if count == n:
                    j = i + 1
                    while j < end and not (any_header.match(self.lines[j]) and not self._is_sub(j, header)):
                        j += 1
                    return i, j
        return None

    def _is_sub(self, i: int, header: str) -> bool:
        # [[models.tiers]] belongs to the preceding [[models]] table.
        return "models" in header and "tiers" not in header and "models.tiers" in self.lines[i]


def _parse_yaml(name: str, text: str) -> tuple[Any, Locator]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PriceFileError(name, mark.line + 1 if mark is not None else None, None,
                             f"invalid YAML: {exc}") from None

    def locate(path: tuple[str | int, ...]) -> int | None:
        current = node
        line = None if current is None else current.start_mark.line + 1
        for part in path:
            if isinstance(current, yaml.MappingNode):
                found = next(((k, v) for k, v in current.value if k.value == part), None)
                if found is None:
                    return line
                line = found[0].start_mark.line + 1
                current = found[1]
            elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) \
                    and part < len(current.value):
                current = current.value[part]
                line = current.start_mark.line + 1
            else:
                return line
        return line

    return data, locate


# --- validation -----------------------------------------------------------------------------------

class _Validator:
    def __init__(self, name: str, locate: Locator) -> None:
        self.name, self.locate = name, locate

    def fail(self, path: tuple[str | int, ...], message: str) -> PriceFileError:
        key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")
        return PriceFileError(self.name, self.locate(path), key or None, message)

    def overrides(self, data: Any) -> Overrides:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise self.fail((), "the top level must be a table/mapping")
        for key in data:
            if key not in _TOP_KEYS:
                raise self.fail((str(key),), f"unknown key (expected one of {sorted(_TOP_KEYS)})")
        models = self.models(data.get("models", []))
        return Overrides(
            models=models,
            aliases=self.aliases(data.get("aliases", {})),
            multipliers=self.multipliers(data.get("multipliers", {})),
            sources=(self.name,),
        )

    def models(self, raw: Any) -> dict[AliasKey, ModelPricing]:
        if not isinstance(raw, list):
            raise self.fail(("models",), "must be a list of model tables")
        grouped: dict[AliasKey, list[PricePeriod]] = {}
        display: dict[AliasKey, tuple[str | None, str]] = {}
        for i, entry in enumerate(raw):
            path: tuple[str | int, ...] = ("models", i)
            if not isinstance(entry, Mapping):
                raise self.fail(path, "must be a table/mapping")
            for key in entry:
                if key not in _MODEL_KEYS:
                    raise self.fail((*path, str(key)), f"unknown key (expected one of {sorted(_MODEL_KEYS)})")
            model_name = entry.get("name")
            if not isinstance(model_name, str) or not model_name.strip():
                raise self.fail((*path, "name"), "required: the model name as calls report it")
            provider = entry.get("provider")
            if provider is not None and (not isinstance(provider, str) or not provider.strip()):
                raise self.fail((*path, "provider"), "must be a provider name (gen_ai.provider.name)")
            rates = self.rates(entry, path)
            if rates.input is None and rates.output is None:
                raise self.fail(path, "needs at least an 'input' or 'output' price")
            tiers = self.tiers(entry.get("tiers", []), (*path, "tiers"))
            start = self.date(entry.get("effective_from"), (*path, "effective_from"))
            key = (provider.strip() if provider else None, canonical(model_name))
            periods = grouped.setdefault(key, [])
            if any(p.start == start for p in periods):
                raise self.fail((*path, "effective_from"),
                                f"a second price for {model_name!r} with the same effective date")
            periods.append(PricePeriod(rates=rates, tiers=tiers, start=start))
            display[key] = (provider, model_name.strip())
        result: dict[AliasKey, ModelPricing] = {}
        for key, periods in grouped.items():
            # Undated first, then by date: resolution takes the last period already in force.
            periods.sort(key=lambda p: (p.start is not None, p.start or date.min))
            result[key] = ModelPricing(
                provider=key[0] or "*", model=display[key][1], periods=tuple(periods), source=self.name,
            )
        return result

    def rates(self, entry: Mapping[str, Any], path: tuple[str | int, ...]) -> Rates:
        values: dict[str, Decimal] = {}
        for rate in RATE_FIELDS:
            if rate in entry:
                values[rate] = self.price(entry[rate], (*path, rate))
        return Rates(**values)

    def tiers(self, raw: Any, path: tuple[str | int, ...]) -> tuple[Tier, ...]:
        if not isinstance(raw, list):
            raise self.fail(path, "must be a list of tier tables")
        tiers = []
        for i, entry in enumerate(raw):
            tpath = (*path, i)
            if not isinstance(entry, Mapping):
                raise self.fail(tpath, "must be a table/mapping")
            for key in entry:
                if key not in _TIER_KEYS:
                    raise self.fail((*tpath, str(key)), f"unknown key (expected one of {sorted(_TIER_KEYS)})")
            threshold = entry.get("above_input_tokens")
            if type(threshold) is not int or threshold < 0:
                raise self.fail((*tpath, "above_input_tokens"), "required: a whole number of tokens >= 0")
            tiers.append(Tier(above_input_tokens=threshold, rates=self.rates(entry, tpath)))
        tiers.sort(key=lambda t: t.above_input_tokens)
        return tuple(tiers)

    def price(self, value: Any, path: tuple[str | int, ...]) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise self.fail(path, f"must be a number (USD per 1M tokens), got {type(value).__name__}")
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise self.fail(path, f"must be a number (USD per 1M tokens), got {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise self.fail(path, f"must be a finite price >= 0, got {value!r}")
        return amount

    def date(self, value: Any, path: tuple[str | int, ...]) -> date | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.fail(path, f"must be a date YYYY-MM-DD, got {value!r}")

    def multipliers(self, raw: Any) -> dict[str, Decimal]:
        if not isinstance(raw, Mapping):
            raise self.fail(("multipliers",), "must be a table of provider = multiplier")
        out = {}
        for provider, value in raw.items():
            amount = self.price(value, ("multipliers", str(provider)))
            if amount <= 0:
                raise self.fail(("multipliers", str(provider)), "must be > 0 (0.8 = pay 80% of list price)")
            out[str(provider)] = amount
        return out

    def aliases(self, raw: Any) -> dict[AliasKey, AliasKey]:
        if not isinstance(raw, Mapping):
            raise self.fail(("aliases",), "must be a table of name = target")
        out: dict[AliasKey, AliasKey] = {}
        for name, target in raw.items():
            path = ("aliases", str(name))
            provider: str | None = None
            if isinstance(target, Mapping):
                unknown = set(target) - {"model", "provider", "for_provider"}
                if unknown:
                    raise self.fail(path, f"unknown keys {sorted(unknown)} (expected model, provider, "
                                          "for_provider)")
                provider = target.get("provider")
                scope = target.get("for_provider")
                target = target.get("model")
            else:
                scope = None
            if not isinstance(target, str) or not target.strip():
                raise self.fail(path, "must name a model: \"name\" or { model = \"name\", provider = \"p\" }")
            if provider is not None and not isinstance(provider, str):
                raise self.fail(path, "provider must be a string")
            if scope is not None and not isinstance(scope, str):
                raise self.fail(path, "for_provider must be a string")
            out[(scope, canonical(str(name)))] = (provider, target.strip())
        return out
