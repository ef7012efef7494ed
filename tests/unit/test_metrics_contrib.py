"""contrib/: the Grafana dashboard and the Prometheus rules name only metrics that exist, and promtool agrees.

The alert rules are checked and unit-tested with Debian's promtool (package
`prometheus`, installed by `make test-unit` through packaging/install-host-deps.sh): `promtool test rules`
feeds series to the real rule engine and asserts which alerts fire when.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fluxforge.observe import metric_defs as M

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "contrib" / "grafana" / "fluxforge.json"
PROM = REPO / "contrib" / "prometheus"
RULES = PROM / "fluxforge-rules.yml"
ALERTS = {"FluxForgeCollectorStale", "FluxForgeEtlLagging", "FluxForgeSyncBacklog", "FluxForgeDiskHigh",
          "FluxForgeUnitFailed", "FluxForgeLiveLate"}
# series that come from Prometheus itself or node_exporter, not from FluxForge
FOREIGN = {"up", "node_systemd_unit_state"}
_NAME = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(?=[{\[)]|$|\s*(?:[=!<>/*+-]|and\b|or\b|unless\b))", re.M)
_FUNCS = {"sum", "max", "min", "avg", "rate", "increase", "histogram_quantile", "time", "by", "without", "count",
          "and", "or", "unless", "bool", "on", "ignoring", "label_values"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (identifiers followed by a selector, range or operator)."""
    expr = re.sub(r'"[^"]*"', '""', expr)          # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)        # label matchers
    expr = re.sub(r"\b(?:by|without|on|ignoring) \([^)]*\)", "", expr)  # grouping and matching labels
    return {n for n in _NAME.findall(expr) if n not in _FUNCS}


def test_metric_names_parser_finds_names():
    assert metric_names('sum by (instance) (rate(fluxforge_x_total{a="b"}[5m])) == 0 or up == 0') == \
        {"fluxforge_x_total", "up"}
    assert metric_names('max without (quantile) (a_seconds{quantile="0.99"}) > on (instance, job) b_seconds') == \
        {"a_seconds", "b_seconds"}


def dashboard_exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    # label_values(<selector>, <label>): the selector is the expression
    exprs += [re.sub(r",\s*\w+\)$", ")", v["definition"]) for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_dashboard_is_a_valid_dashboard_naming_existing_metrics():
    dash = json.loads(DASHBOARD.read_text())
    for key in ("title", "uid", "schemaVersion", "panels", "templating", "time"):
        assert key in dash, key
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")) and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "host", "exchange", "symbol"} <= variables
    known = M.all_series_names() | FOREIGN
    used = set()
    for expr in dashboard_exprs(dash):
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f"{expr}: unknown {names - known}"
        used |= names
    # the fleet view shows what the issue asks for, per host
    for needed in ("fluxforge_messages_received_total", "fluxforge_last_message_age_seconds",
                   "fluxforge_oldest_ready_segment_age_seconds", "fluxforge_sync_backlog_bytes",
                   "fluxforge_disk_used_bytes"):
        assert needed in used, needed
    # every FluxForge metric appears somewhere on the dashboard
    missing = {d.name for d in M.ALL if not (M.exposed_names(d) & used)}
    assert not missing, f"metrics not on the dashboard: {sorted(missing)}"


def test_alert_rules_name_existing_metrics():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert {r["alert"] for r in rules} == ALERTS
    known = M.all_series_names() | FOREIGN
    for r in rules:
        names = metric_names(r["expr"])
        assert names and names <= known, f"{r['alert']}: unknown {names - known}"
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        # A failure, not a skip: `make test-unit` installs it, so a green run always ran these checks.
        pytest.fail("promtool missing: run packaging/install-host-deps.sh --unit (Debian package prometheus)")
    return path


def test_promtool_checks_rules_and_scrape_config():
    for args in (["check", "rules", RULES.name], ["check", "config", "scrape.yml"]):
        out = subprocess.run([promtool(), *args], cwd=PROM, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rule_unit_tests_fire_each_alert_at_its_threshold():
    tests = yaml.safe_load((PROM / "fluxforge-rules.test.yml").read_text())["tests"]
    tested = {t["alertname"] for case in tests for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert tested == ALERTS
    out = subprocess.run([promtool(), "test", "rules", "fluxforge-rules.test.yml"], cwd=PROM,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
