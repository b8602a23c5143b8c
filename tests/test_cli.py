"""The `llmtally` command: prices, and one clear line for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmtally.cli import main


def test_prices_shows_resolution_and_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gpt-4o-mini-2024-07-18"]) == 0
    out = capsys.readouterr().out
    assert "priced as gpt-4o-mini [openai] from genai-prices" in out
    assert "input $0.15, output $0.6, cache_read $0.075" in out


def test_prices_shows_tiers_and_dates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gemini-2.5-pro", "--provider", "gcp.gemini"]) == 0
    assert "above 200,000 input tokens: input $2.5, output $15" in capsys.readouterr().out
    assert main(["prices", "o3", "--at", "2025-06-01"]) == 0
    assert "input $10, output $40" in capsys.readouterr().out


def test_unknown_model_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "no-such-model"]) == 1
    assert "unpriced" in capsys.readouterr().out


def test_override_file_named_in_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("models:\n  - name: local-7b\n    input: 0\n    output: 0\n")
    assert main(["prices", "local-7b", "--provider", "ollama", "--prices", str(path)]) == 0
    assert str(path) in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["prices", "x", "--at", "tomorrow"], "llmtally: error: argument --at: not a date: 'tomorrow'"),
    (["prices", "x", "--prices", "/nonexistent/p.toml"], "llmtally: error: /nonexistent/p.toml: cannot read"),
    (["nope"], "llmtally: error: argument command: invalid choice"),
])
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "llmtally.cli", *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
