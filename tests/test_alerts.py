"""The alert rules as Prometheus runs them (RELIABILITY.md line 35): promtool checks
k8s/monitoring/alerts.yaml and runs k8s/monitoring/alerts-test.yaml, in which every alert
fires under the fault it names and resolves when the fault ends, and a store outage is one
page. promtool comes with Debian's `prometheus` package (CI installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "k8s" / "monitoring"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CRYPTOREC_REQUIRE_PROMTOOL"):
            pytest.fail("promtool is required here (apt-get install prometheus)")
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    return found


def _rules() -> dict[str, object]:
    return {"groups": yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]["groups"]}


def test_alert_rules_are_valid_prometheus_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(_rules()))
    checked = subprocess.run(
        [_promtool(), "check", "rules", str(tmp_path / "rules.yaml")],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_under_its_fault_and_resolves(tmp_path: Path) -> None:
    rules = _rules()
    for group in rules["groups"]:  # type: ignore[attr-defined]
        for rule in group["rules"]:
            rule.pop("annotations", None)  # templates are not what is tested
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    shutil.copy(MONITORING / "alerts-test.yaml", tmp_path / "alerts-test.yaml")
    tested = subprocess.run(
        [_promtool(), "test", "rules", str(tmp_path / "alerts-test.yaml")],
        capture_output=True,
        text=True,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}  # type: ignore[attr-defined]
    scenarios = yaml.safe_load((MONITORING / "alerts-test.yaml").read_text())["tests"]
    fired = {
        case["alertname"]
        for scenario in scenarios
        for case in scenario["alert_rule_test"]
        if case["exp_alerts"]
    }
    resolved = {
        case["alertname"]
        for scenario in scenarios
        for case in scenario["alert_rule_test"]
        if not case["exp_alerts"]
    }
    assert fired == names, names - fired  # each alert is shown to fire ...
    assert resolved >= names, names - resolved  # ... and to resolve or stay quiet
