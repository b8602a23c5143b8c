"""User price override files: TOML and YAML, effective dates, tiers, aliases, and loud errors."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from llmtally.pricing import PriceBook, PriceFileError, load_overrides
from llmtally.usage import Usage

D = Decimal
M = D(1_000_000)
AT = datetime(2025, 9, 1, tzinfo=timezone.utc)
MILLION_EACH = Usage.build(input_tokens=1_000_000, output_tokens=1_000_000)

TOML = """\
[[models]]
provider = "ollama"
name = "llama3"
input = 0.10
output = 0.20

[[models]]
name = "in-house-7b"
input = 1
output = 2
effective_from = 2025-01-01

[[models]]
name = "in-house-7b"
input = 0.5
output = 1
effective_from = 2025-07-01

[[models]]
name = "long-ctx"
input = 1
output = 4
[[models.tiers]]
above_input_tokens = 100000
input = 2
output = 8

[aliases]
"prod-chat" = "gpt-4o-mini"
"ft:gpt-4o-mini:acme::9xk2" = { model = "gpt-4o-mini", provider = "openai" }
"""

YAML = """\
models:
  - provider: ollama
    name: llama3
    input: 0.10
    output: 0.20
  - name: in-house-7b
    input: 1
    output: 2
    effective_from: 2025-01-01
  - name: in-house-7b
    input: "0.5"
    output: 1
    effective_from: "2025-07-01"
  - name: long-ctx
    input: 1
    output: 4
    tiers:
      - above_input_tokens: 100000
        input: 2
        output: 8
aliases:
  prod-chat: gpt-4o-mini
  "ft:gpt-4o-mini:acme::9xk2": {model: gpt-4o-mini, provider: openai}
"""


@pytest.fixture(params=["toml", "yaml"])
def book(request: pytest.FixtureRequest, tmp_path: Path) -> PriceBook:
    path = tmp_path / f"prices.{request.param}"
    path.write_text(TOML if request.param == "toml" else YAML)
    return PriceBook(load_overrides(path))


def amount(book: PriceBook, usage: Usage, provider: str, model: str, at: datetime = AT) -> Decimal | None:
    return book.cost(usage, provider=provider, request_model=model, at=at).amount


def test_local_model_priced_by_override(book: PriceBook) -> None:
    # llama3 on Ollama at the file's $0.10 / $0.20 per 1M.
    assert amount(book, MILLION_EACH, "ollama", "llama3") == D("0.30")
    cost = book.cost(MILLION_EACH, provider="ollama", request_model="llama3", at=AT)
    assert cost.catalog is not None and cost.catalog.endswith(("prices.toml", "prices.yaml"))
    # Scoped to provider ollama: the same name elsewhere is not priced by this entry.
    assert amount(book, MILLION_EACH, "groq", "llama3") is None


def test_effective_dates(book: PriceBook) -> None:
    # $1/$2 from 2025-01-01, $0.50/$1 from 2025-07-01.
    june = datetime(2025, 6, 30, 23, 0, tzinfo=timezone.utc)
    july = datetime(2025, 7, 1, 0, 0, tzinfo=timezone.utc)
    assert amount(book, MILLION_EACH, "openai", "in-house-7b", at=june) == D(3)
    assert amount(book, MILLION_EACH, "openai", "in-house-7b", at=july) == D("1.5")


def test_override_tiers(book: PriceBook) -> None:
    # <= 100k input: $1 / $4; above: every token $2 / $8.
    small = Usage.build(input_tokens=100_000, output_tokens=10_000)
    large = Usage.build(input_tokens=100_001, output_tokens=10_000)
    assert amount(book, small, "openai", "long-ctx") == D(100_000) / M + D(40_000) / M
    assert amount(book, large, "openai", "long-ctx") == D(200_002) / M + D(80_000) / M


def test_aliases_for_deployments_and_fine_tunes(book: PriceBook) -> None:
    # Both alias to gpt-4o-mini: $0.15 / $0.60 per 1M.
    assert amount(book, MILLION_EACH, "azure.ai.openai", "prod-chat") == D("0.75")
    assert amount(book, MILLION_EACH, "openai", "ft:gpt-4o-mini:acme::9xk2") == D("0.75")


def test_overrides_take_precedence_over_catalog(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[models]]\nprovider = "openai"\nname = "gpt-4o-mini"\ninput = 0.1\noutput = 0.4\n')
    book = PriceBook(load_overrides(path))
    assert amount(book, MILLION_EACH, "openai", "gpt-4o-mini-2024-07-18") == D("0.5")


def test_missing_rate_makes_call_unpriced_not_free(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[models]]\nname = "embed-only"\ninput = 0.02\n')
    book = PriceBook(load_overrides(path))
    assert amount(book, Usage.build(input_tokens=1_000_000), "x", "embed-only") == D("0.02")
    cost = book.cost(Usage.build(input_tokens=10, output_tokens=10), provider="x",
                     request_model="embed-only", at=AT)
    assert cost.status == "unpriced" and cost.amount is None


def test_later_file_wins(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.yaml"
    a.write_text('[[models]]\nname = "m"\ninput = 1\noutput = 1\n')
    b.write_text("models:\n  - name: m\n    input: 2\n    output: 2\n")
    assert amount(PriceBook(load_overrides(a, b)), MILLION_EACH, "p", "m") == D(4)


@pytest.mark.parametrize(("name", "text", "line", "key", "fragment"), [
    ("bad.toml", '[[models]]\nname = "m"\ninput = 1\noutptu = 2\n', 4, "models[0].outptu", "unknown key"),
    ("bad.toml", '[[models]]\nname = "a"\ninput = 1\n\n[[models]]\nname = "m"\ninput = -1\n', 7,
     "models[1].input", ">= 0"),
    ("bad.toml", '[[models]]\nname = "m"\ninput = "cheap"\n', 3, "models[0].input", "number"),
    ("bad.toml", '[[models]]\ninput = 1\n', 1, "models[0].name", "required"),
    ("bad.toml", '[[models]]\nname = "m"\ninput = 1\neffective_from = "soon"\n', 4,
     "models[0].effective_from", "date"),
    ("bad.toml", '[[models]]\nname = "m"\ninput = 1\n[[models.tiers]]\ninput = 2\n', 4,
     "models[0].tiers[0].above_input_tokens", "required"),
    ("bad.toml", '[multipliers]\nopenai = 0\n', 2, "multipliers.openai", "> 0"),
    # A key that is absent is reported at its table's header line.
    ("bad.toml", '[[models]]\nname = "m"\ninput = 1\n[[models]]\nname = "m"\ninput = 2\n', 4,
     "models[1].effective_from", "same effective date"),
    ("bad.toml", '[[models]]\nname = "m"\ninput = = 1\n', 3, None, "invalid TOML"),
    ("bad.toml", 'prices = 1\n', 1, "prices", "unknown key"),
    ("bad.yaml", "models:\n  - name: m\n    input: 1\n    outptu: 2\n", 4, "models[0].outptu", "unknown key"),
    ("bad.yaml", "models:\n  - name: m\n    input: [1]\n", 3, "models[0].input", "number"),
    ("bad.yaml", "models:\n  - name: m\n   input: 1\n", 3, None, "invalid YAML"),
    ("bad.yaml", "aliases:\n  a: {model: x, typo: y}\n", 2, "aliases.a", "unknown keys"),
])
def test_broken_file_fails_loudly_with_file_line_and_key(
        tmp_path: Path, name: str, text: str, line: int, key: str | None, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PriceFileError) as info:
        load_overrides(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line, str(err)
    assert err.key == key
    assert fragment in str(err)
    assert str(err).startswith(f"{path}:{line}: ")


def test_unreadable_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="cannot read"):
        load_overrides(tmp_path / "missing.toml")
    other = tmp_path / "prices.json"
    other.write_text("{}")
    with pytest.raises(PriceFileError, match="unknown format"):
        load_overrides(other)
