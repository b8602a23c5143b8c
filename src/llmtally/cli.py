"""The ``llmtally`` command."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import NoReturn

from llmtally._version import __version__
from llmtally.pricing import PriceBook, PriceFileError, Rates
from llmtally.pricing.model import RATE_FIELDS


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one clear line, exit 2, as argparse does, minus usage noise
        self.exit(2, f"llmtally: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llmtally", description="Exact token usage and cost for LLM calls.")
    parser.add_argument("--version", action="version", version=f"llmtally {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    prices = sub.add_parser("prices", help="show the price a model resolves to, and where it came from")
    prices.add_argument("model", help="model name as calls report it, e.g. gpt-4o-mini-2024-07-18")
    prices.add_argument("--provider", default="openai", help="gen_ai.provider.name (default: openai)")
    prices.add_argument("--prices", action="append", default=[], metavar="FILE",
                        help="price override file (TOML/YAML); also LLMTALLY_PRICE_FILES")
    prices.add_argument("--at", type=_date, default=None, metavar="YYYY-MM-DD",
                        help="prices in force on this day (default: now)")
    prices.add_argument("--service-tier", default=None, help="e.g. flex, priority")
    fake = sub.add_parser("fake-provider", help="serve the fake LLM provider (OpenAI wire format) for tests")
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    fake.add_argument("--port", type=int, default=8787, help="port (default: 8787; 0 picks a free one)")
    return parser


def _date(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (use YYYY-MM-DD)") from None


def _fmt(value: Decimal | None) -> str:
    return "-" if value is None else f"${value.normalize():f}"


def _rates_line(rates: Rates) -> str:
    return ", ".join(f"{name} {_fmt(getattr(rates, name))}" for name in RATE_FIELDS
                     if getattr(rates, name) is not None)


def cmd_prices(args: argparse.Namespace) -> int:
    book = PriceBook.from_env(args.prices)
    resolved = book.resolve(args.provider, args.model, args.at, args.service_tier)
    if resolved is None:
        print(f"{args.model} ({args.provider}): unpriced - no exact or rule-based match in "
              f"{book.catalog.version if book.catalog else 'no catalog'}"
              f"{' or ' + ', '.join(book.overrides.sources) if book.overrides.sources else ''}")
        return 1
    print(f"{args.model} ({args.provider}) is priced as {resolved.pricing.model} "
          f"[{resolved.pricing.provider}] from {resolved.catalog}")
    print(f"  USD per 1M tokens: {_rates_line(resolved.rates)}")
    for threshold, rates in resolved.tier_rates:
        print(f"  above {threshold:,} input tokens: {_rates_line(rates)}")
    return 0


def cmd_fake_provider(args: argparse.Namespace) -> int:
    import signal
    import threading

    from llmtally.testing import FakeProvider

    try:
        fake = FakeProvider(host=args.host, port=args.port)
    except OSError as exc:
        print(f"llmtally: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fake:
        print(f"llmtally fake provider listening on {fake.url}  (OpenAI base_url: {fake.openai_url})", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "prices":
            return cmd_prices(args)
        if args.command == "fake-provider":
            return cmd_fake_provider(args)
    except PriceFileError as exc:
        print(f"llmtally: error: {exc}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse enforces a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
