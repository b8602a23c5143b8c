"""The ledger through the command line: `llmtally run`, `report`, `demo`, and SIGTERM with zero loss."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

import pytest

from llmtally.ledger import Ledger
from llmtally.testing import FakeProvider

pytest.importorskip("openai")

LLMTALLY = [sys.executable, "-m", "llmtally.cli"]
USAGE = {"input": 1200, "output": 300, "cache_read": 1024}
# gpt-4o-mini: 176 uncached * $0.15 + 1024 cached * $0.075 + 300 output * $0.60 per 1M tokens
COST = (Decimal(176) * Decimal("0.15") + Decimal(1024) * Decimal("0.075") + Decimal(300) * Decimal("0.60")) / 10**6

APP = textwrap.dedent("""
    import sys, time, openai
    client = openai.OpenAI(max_retries=0)
    for i in range(int(sys.argv[1])):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    print("ready", flush=True)
    if len(sys.argv) > 2:
        time.sleep(float(sys.argv[2]))  # wait to be terminated
""")


def env_for(fake: FakeProvider, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_", "LLMTALLY_LEDGER"))}
    env.update({"OPENAI_BASE_URL": fake.openai_url, "OPENAI_API_KEY": "sk-test",
                "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai,httpx,httpx2",  # the peers installed for other tests
                "XDG_DATA_HOME": str(tmp_path / "data")})
    return env


def run_app(fake: FakeProvider, tmp_path: Path, url: str, calls: int) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    return subprocess.run([*LLMTALLY, "run", "--ledger", url, "--", sys.executable, str(app), str(calls)],
                          env=env_for(fake, tmp_path), capture_output=True, text=True, timeout=120)


def test_run_records_every_call_and_prints_a_summary(fake_provider: FakeProvider, tmp_path: Path) -> None:
    fake_provider.default_headers["X-Fake-Usage"] = json.dumps(USAGE)
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    proc = run_app(fake_provider, tmp_path, url, 3)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ready"
    summary = proc.stderr.strip().splitlines()[-1]
    assert summary.startswith("llmtally: 3 LLM calls, 3,600 input / 900 output tokens")
    assert f"${COST * 3}" in summary or f"${(COST * 3).normalize()}" in summary
    assert Ledger(url).count() == 3

    out = subprocess.run([*LLMTALLY, "report", "--ledger", url, "--by", "model", "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    (row,) = data["rows"]
    assert row["model"] == "gpt-4o-mini" and row["calls"] == 3
    assert Decimal(row["cost_usd"]) == COST * 3
    assert Decimal(row["cache_savings_usd"]) == 3 * Decimal(1024) * (Decimal("0.15") - Decimal("0.075")) / 10**6
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (3600, 900, 3072)

    table = subprocess.run([*LLMTALLY, "report", "--ledger", url, "--by", "tenant,model"], capture_output=True,
                           text=True, timeout=60)
    assert table.returncode == 0 and "gpt-4o-mini" in table.stdout and "total" in table.stdout

    as_csv = subprocess.run([*LLMTALLY, "report", "--ledger", url, "--by", "day", "--format", "csv"],
                            capture_output=True, text=True, timeout=60)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 1 and rows[0]["calls"] == "3" and Decimal(rows[0]["cost_usd"]) == COST * 3


def test_sigterm_loses_no_record(fake_provider: FakeProvider, tmp_path: Path) -> None:
    calls = 300
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    app = tmp_path / "app.py"
    app.write_text(APP)
    proc = subprocess.Popen([*LLMTALLY, "run", "--ledger", url, "--", sys.executable, str(app), str(calls), "60"],
                            env=env_for(fake_provider, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # every call made; records still in flight
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 128 + signal.SIGTERM  # a normal exit: telemetry flushed by the exit hooks
    assert Ledger(url).count() == calls


def test_report_errors_are_one_clear_line(tmp_path: Path) -> None:
    cases = [
        (["report", "--ledger", "postgresql+psycopg://u:secret@127.0.0.1:1/db"], "cannot reach the ledger database"),
        (["report", "--ledger", "nonsense://x"], "cannot use ledger URL"),
        (["report", "--ledger", f"sqlite:///{tmp_path / 'x.sqlite'}", "--by", "colour"], "unknown dimension"),
        (["report", "--ledger", f"sqlite:///{tmp_path / 'x.sqlite'}", "--since", "last tuesday"], "not a time"),
        (["report", "--ledger", f"sqlite:///{tmp_path / 'x.sqlite'}", "--month", "2025-13"], "not a month"),
        (["report", "--ledger", f"sqlite:///{tmp_path / 'x.sqlite'}", "--where", "tenant"], "DIM=VALUE"),
        (["run"], "nothing to run"),
        (["run", "--ledger", "nonsense://x", "--", "python", "-c", "pass"], "cannot use ledger URL"),
    ]
    for args, message in cases:
        proc = subprocess.run([*LLMTALLY, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("llmtally: error: ") and message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert "secret" not in proc.stderr


def test_demo_runs_and_reports(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENAI_"))}
    start = time.monotonic()
    proc = subprocess.run([*LLMTALLY, "demo", "--calls", "60", "--no-progress", "--ledger", url], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - start < 120
    assert "Spend by model" in proc.stdout and "Spend by tenant and feature" in proc.stdout
    for expected in ("gpt-4o-mini", "o3", "text-embedding-3-small", "claude-haiku-4-5", "gemini-2.5-flash", "acme",
                     "globex", "initech",
                     "unpriced"):
        assert expected in proc.stdout, expected
    assert "60 usage records written" in proc.stdout
    assert Ledger(url).count() == 60
