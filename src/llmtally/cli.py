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
    rep = sub.add_parser("report", help="spend and tokens from the usage ledger")
    rep.add_argument("--by", default="model", help="comma-separated: " + ", ".join(_dimensions()))
    rep.add_argument("--since", default=None, help="7d, 24h, today, month, or an ISO date/time (UTC)")
    rep.add_argument("--until", default=None, help="same forms as --since (exclusive)")
    rep.add_argument("--month", default=None, metavar="YYYY-MM", help="one month, day by day")
    rep.add_argument("--where", action="append", default=[], metavar="DIM=VALUE",
                     help="filter, e.g. --where tenant=acme (repeatable)")
    rep.add_argument("--top", type=int, default=None, help="only the N largest rows")
    rep.add_argument("--order", default="cost", choices=["cost", "calls", "tokens", "key"])
    rep.add_argument("--format", default="table", choices=["table", "csv", "json"])
    rep.add_argument("--ledger", default=None, metavar="URL", help="database URL (default: LLMTALLY_LEDGER_URL "
                     "or a SQLite file in your data directory)")
    run = sub.add_parser("run", help="run a program instrumented, usage recorded in the ledger",
                         usage="llmtally run [--ledger URL] -- PROGRAM [ARGS...]")
    run.add_argument("--ledger", default=None, metavar="URL", help="database URL for this run")
    run.add_argument("--no-summary", action="store_true", help="no spend summary at exit")
    run.add_argument("program", nargs=argparse.REMAINDER, help="the program and its arguments, after --")
    demo = sub.add_parser("demo", help="a realistic workload against the fake provider, then the report")
    demo.add_argument("--calls", type=int, default=200, help="how many LLM calls (default 200)")
    demo.add_argument("--ledger", default=None, metavar="URL", help="database URL (default: a demo SQLite "
                      "file in the temp directory)")
    demo.add_argument("--no-progress", action="store_true")
    fake = sub.add_parser("fake-provider", help="serve the fake LLM provider (OpenAI wire format) for tests")
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    fake.add_argument("--port", type=int, default=8787, help="port (default: 8787; 0 picks a free one)")
    col = sub.add_parser("collector-config", help="the OpenTelemetry Collector cost-enrichment config, generated "
                         "from the price catalog (collector-config/cost-enrichment.yaml)")
    col.add_argument("--providers", action="append", default=None, metavar="NAMES",
                     help="gen_ai.provider.name values to price, comma-separated (default: every provider llmtally "
                     "maps to the catalog but openrouter)")
    col.add_argument("--models", action="append", default=None, metavar="PATTERNS",
                     help="catalog model ids to include, comma-separated shell patterns, e.g. 'gpt-4o*,claude-*' "
                     "(default: all; other models are unpriced)")
    col.add_argument("--at", type=_date, default=None, metavar="YYYY-MM-DD",
                     help="only the prices in force on this day (default: every dated price, by span start time)")
    col.add_argument("-o", "--output", default="-", metavar="PATH", help="file to write (default: stdout)")
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


def _dimensions() -> list[str]:
    from llmtally.ledger.reports import DIMENSIONS

    return list(DIMENSIONS)


def cmd_report(args: argparse.Namespace) -> int:
    from llmtally.ledger import Ledger, Spool, month, parse_since, replay, report
    from llmtally.ledger.render import render

    by = [d.strip() for d in args.by.split(",") if d.strip()]
    filters = {}
    for item in args.where:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--where takes DIM=VALUE, got {item!r}")
        filters[name.strip()] = value.strip()
    since = parse_since(args.since) if args.since else None
    until = parse_since(args.until) if args.until else None
    ledger = Ledger(args.ledger)
    ledger.ensure_schema()
    replay(ledger, Spool.for_url(ledger.url))  # what a crashed or offline run left on disk counts too
    if args.month:
        result = month(ledger, args.month, filters=filters)
    else:
        result = report(ledger, by, since=since, until=until, filters=filters, top=args.top, order=args.order)
    print(render(result, args.format), end="" if args.format == "csv" else "\n")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from llmtally._setup import _OTLP_ENDPOINT_VARS, ENV_LEDGER
    from llmtally.distro import ENV_RUN_SUMMARY
    from llmtally.ledger.store import ENV_LEDGER_URL

    command = list(args.program)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("nothing to run: llmtally run -- python app.py")
    if args.ledger:
        from llmtally.ledger import Ledger

        Ledger(args.ledger)  # a bad URL fails here, in one line, not inside the app
        os.environ[ENV_LEDGER_URL] = args.ledger
    os.environ.setdefault(ENV_LEDGER, "on")
    if not args.no_summary:
        os.environ[ENV_RUN_SUMMARY] = "1"
    os.environ["OTEL_PYTHON_DISTRO"] = "llmtally"
    os.environ["OTEL_PYTHON_CONFIGURATOR"] = "llmtally"
    otlp = any(os.environ.get(v) for v in _OTLP_ENDPOINT_VARS)  # the same test configure() makes
    for signal_ in ("TRACES", "METRICS", "LOGS"):  # the ledger is the default sink; OTLP when configured
        os.environ.setdefault(f"OTEL_{signal_}_EXPORTER", "otlp" if otlp else "none")
    from opentelemetry.instrumentation.auto_instrumentation import run as instrument_and_exec

    sys.argv = ["opentelemetry-instrument", *command]
    instrument_and_exec()  # execs the program: this process becomes the app
    return 0  # pragma: no cover - exec does not return


def cmd_demo(args: argparse.Namespace) -> int:
    from llmtally.demo import default_demo_ledger, run_demo

    if args.calls < 1:
        raise ValueError("--calls must be at least 1")
    run_demo(args.calls, args.ledger or default_demo_ledger(), progress=not args.no_progress)
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


def cmd_collector_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llmtally.collector.costconfig import render
    from llmtally.collector.ottl import Selection, cost_program, names_of
    from llmtally.pricing import bundled_catalog

    selection = Selection(providers=names_of(args.providers) if args.providers else None,
                          models=names_of(args.models) if args.models else None,
                          at=args.at.date() if args.at else None)
    text = render(cost_program(bundled_catalog(), selection), selection)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output} ({len(text):,} bytes)", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "prices":
            return cmd_prices(args)
        if args.command == "fake-provider":
            return cmd_fake_provider(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "collector-config":
            return cmd_collector_config(args)
        if args.command == "demo":
            return cmd_demo(args)
    except (PriceFileError, ValueError, FileNotFoundError) as exc:
        print(f"llmtally: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from llmtally.ledger import LedgerError

        if isinstance(exc, LedgerError):
            print(f"llmtally: error: {exc}", file=sys.stderr)
            return 2
        raise
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover - argparse enforces one


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
