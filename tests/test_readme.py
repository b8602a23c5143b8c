"""The README's Python examples really run and print what their comments say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def promises(block: str) -> list[str]:
    """Each `print(...)  # text` line promises output starting with `text` (up to an ellipsis);
    comments that are prose (no digits, not a status word) are not promises."""
    out = []
    for match in re.finditer(r"^print\(.*?\)\s+# (.*)$", block, re.M):
        text = match.group(1).split("...")[0].strip()
        if any(ch.isdigit() for ch in text) or text in ("unpriced", "priced"):
            out.append(text)
    return out


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_example_output_matches_its_comments(block: str) -> None:
    proc = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout.splitlines()
    expected = promises(block)
    assert expected, "an example without checked output"
    for promise in expected:
        assert any(line.startswith(promise) for line in printed), (promise, printed)
