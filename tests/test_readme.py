"""The README's quickstart really runs and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_quickstart_output_matches_its_comments() -> None:
    (block,) = python_blocks()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(README), "exec"), {})
    printed = out.getvalue().splitlines()
    # Each `print(...)  # text` line promises output starting with `text` (up to an ellipsis).
    promises = [m.group(1).split("...")[0].strip()
                for m in re.finditer(r"^print\(.*?\)\s+# (.*)$", block, re.M)]
    prose = {"per-leaf Decimal amounts, summing to amount"}
    promises = [p for p in promises if p not in prose]
    assert len(printed) == 5
    checked = 0
    for promise in promises:
        assert any(line.startswith(promise) for line in printed), (promise, printed)
        checked += 1
    assert checked == 4
