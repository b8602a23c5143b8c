"""The shipped Prometheus rules: promtool accepts them, their promtool unit tests pass, every alert has a
firing and a quiet case, and the unit tests fail when an alert is broken (they can fail)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.prom import RULES, binary

TESTS = RULES.parent / "tests"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    files = sorted(TESTS.glob("*.test.yml"))
    assert len(files) >= len(alert_rules())
    result = promtool("test", "rules", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS.glob("*.test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert set(alert_rules()) == firing == quiet, (set(alert_rules()), firing, quiet)


def test_the_shipped_budget_is_one_rule_that_everything_reads() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    budget = [r for r in rules if r.get("record") == "llmtally:budget_usd:monthly"]
    assert len(budget) == 1 and budget[0]["expr"].startswith("vector(")
    # One group: alerts must see the recording rules of the same evaluation (see the file's header).
    assert len(groups) == 1
    burn = alert_rules()
    # The multi-window shape: a long and a short window, both over the same threshold.
    assert burn["LLMSpendFastBurn"]["expr"] == \
        "llmtally:spend_burn_rate:1h > 14.4 and llmtally:spend_burn_rate:5m > 14.4"
    assert burn["LLMSpendSlowBurn"]["expr"] == "llmtally:spend_burn_rate:6h > 6 and llmtally:spend_burn_rate:30m > 6"
    recorded = {r["record"]: r["expr"] for r in rules if "record" in r}
    for window in ("5m", "30m", "1h", "6h"):
        spend = f"sum(rate(gen_ai_client_operation_cost_USD_sum[{window}]))"
        assert recorded[f"llmtally:spend_usd:rate{window}"] == spend
        assert recorded[f"llmtally:spend_burn_rate:{window}"] == \
            f"llmtally:spend_usd:rate{window} / llmtally:budget_usd:per_second"
    assert recorded["llmtally:budget_usd:per_second"] == "llmtally:budget_usd:monthly / (30 * 86400)"


@pytest.mark.parametrize(("old", "new", "failing_case"), [
    ("llmtally:spend_burn_rate:1h > 14.4", "llmtally:spend_burn_rate:1h > 144", "exp:[\n"),  # never fires
    ("llmtally:spend_burn_rate:1h > 14.4 and llmtally:spend_burn_rate:5m > 14.4",
     "llmtally:spend_burn_rate:1h > 1.44", "got:[\n"),  # fires when it must not
])
def test_a_broken_alert_fails_its_unit_tests(tmp_path: Path, old: str, new: str, failing_case: str) -> None:
    (tmp_path / "tests").mkdir()
    text = RULES.read_text()
    assert old in text
    (tmp_path / RULES.name).write_text(text.replace(old, new))
    shutil.copy(TESTS / "fast_burn.test.yml", tmp_path / "tests")
    result = promtool("test", "rules", "tests/fast_burn.test.yml", cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout + result.stderr and failing_case in result.stdout + result.stderr
