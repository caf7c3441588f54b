"""The monitoring role's alert rules and configuration, checked by Prometheus' own tools.

The role's templates are rendered by Ansible (render.yml) with the role's defaults, then:
promtool checks every rule file and runs the unit tests in rules/ (series that cross each
threshold and series that stay below it), promtool and amtool check the rendered Prometheus and
Alertmanager configuration, and every alert is held to the promises of docs/monitoring.md.
promtool and amtool come from Debian's packages (scripts/ensure-promtool.sh, run by `make venv`).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RULE_TESTS = sorted((HERE / "rules").glob("*.test.yml"))
RULE_FILES = ["jobs", "tables", "queries", "disk", "backups", "availability", "certificates"]


def tool(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")]))
    assert found, f"{name} is missing: run `make venv` (scripts/ensure-promtool.sh puts it in .venv/bin)"
    return found


def render(out: Path, *extra: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        [tool("ansible-playbook"), str(HERE / "render.yml"), "-e", f"out={out}", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("rules"))


def rules_of(rendered: Path) -> list[dict]:
    found = []
    for name in RULE_FILES:
        for group in yaml.safe_load((rendered / f"{name}.yml").read_text())["groups"]:
            found.extend(r for r in group["rules"] if "alert" in r)
    return found


def test_the_role_renders_one_rule_file_a_concern(rendered):
    vars_main = yaml.safe_load((ROOT / "roles/monitoring/vars/main.yml").read_text())
    assert vars_main["__monitoring_rule_files"] == RULE_FILES
    assert sorted(p.stem for p in rendered.glob("*.yml") if p.stem in RULE_FILES) == sorted(RULE_FILES)


@pytest.mark.parametrize("name", RULE_FILES)
def test_promtool_accepts_the_rule_file(rendered, name):
    p = subprocess.run([tool("promtool"), "check", "rules", str(rendered / f"{name}.yml")],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_of_the_rules_pass(rendered, test_file):
    # A unit test names its rule file relative to itself: run it beside the rendered rules.
    shutil.copy(test_file, rendered / test_file.name)
    p = subprocess.run([tool("promtool"), "test", "rules", test_file.name], cwd=rendered,
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_every_alert_is_tested_firing_and_quiet(rendered):
    """Each alert has a case where it fires and one where it stays quiet."""
    fired, quiet = set(), set()
    for test_file in RULE_TESTS:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {r["alert"] for r in rules_of(rendered)}
    assert alerts - fired == set(), "never seen firing"
    assert alerts - quiet == set(), "never seen quiet"


def test_every_alert_has_a_summary_and_a_runbook_section_that_exists(rendered):
    doc = (ROOT / "docs/monitoring.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    for rule in rules_of(rendered):
        notes = rule.get("annotations", {})
        assert notes.get("summary"), rule["alert"]
        m = re.match(r"docs/monitoring\.md#([a-z0-9-]+): \S", notes.get("runbook", ""))
        assert m, (rule["alert"], notes.get("runbook"))
        assert m.group(1) in anchors, f"{rule['alert']}: docs/monitoring.md has no section #{m.group(1)}"
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]


def test_the_seeds_thresholds_are_the_defaults(rendered):
    expr = {r["alert"]: r["expr"] for r in rules_of(rendered)}
    assert expr["HubTableTooLarge"].endswith("> 10000000000")
    assert expr["HubSlowQuery"].endswith("> 1.0")
    assert expr["HubVolumeFull"].endswith("> 0.7")
    assert expr["HubDailyJobMissed"].endswith(f"> {26 * 3600}")


def test_a_threshold_set_in_the_inventory_reaches_the_rule(tmp_path):
    out = render(tmp_path / "low", "-e", "monitoring_table_bytes_max=1000000",
                 "-e", "monitoring_disk_used_ratio_max=0.5")
    expr = {r["alert"]: r["expr"] for r in rules_of(out)}
    assert expr["HubTableTooLarge"].endswith("> 1000000")
    assert expr["HubVolumeFull"].endswith("> 0.5")


INVENTORY = {"all": {"children": {
    "hub_db": {"hosts": {"hub-db-1.example.internal": {}}},
    "backup_offsite": {"hosts": {"hub-backup-1.example.internal": {}}},
    "monitoring": {"hosts": {"hub-mon-1.example.internal": {}}},
}}}
SITE = {
    "monitoring_webhook_receivers": [{"name": "chat", "url": "https://alerts.example.internal/hub"}],
    "monitoring_email_receivers": [{"name": "dba", "to": "dba@example.internal"}],
    "monitoring_smtp": {"smarthost": "mail.example.internal:587", "from": "hub@example.internal",
                        "auth_username": "hub", "auth_password": "from-the-vault", "require_tls": True},
}


@pytest.fixture(scope="module")
def site_config(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    (out / "vars.yml").write_text(yaml.safe_dump(SITE))
    (out / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    return render(out, "-i", str(out / "inventory.yml"), "-e", f"@{out / 'vars.yml'}")


def test_promtool_accepts_the_prometheus_configuration(site_config):
    p = subprocess.run([tool("promtool"), "check", "config", "--syntax-only", str(site_config / "prometheus.yml")],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr


def test_prometheus_scrapes_every_exporter_over_tls_with_credentials(site_config):
    config = yaml.safe_load((site_config / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    targets = {name: [t for sc in job["static_configs"] for t in sc["targets"]] for name, job in jobs.items()}
    assert targets["node"] == ["hub-db-1.example.internal:9100", "hub-backup-1.example.internal:9100"]
    assert targets["postgres"] == ["hub-db-1.example.internal:9187"]
    for name in ("node", "postgres"):
        assert jobs[name]["scheme"] == "https"
        assert jobs[name]["basic_auth"] == {"username": "hub-scrape",
                                            "password_file": "/etc/prometheus/hub-secrets/scrape.password"}
        assert jobs[name]["tls_config"]["ca_file"] == "/etc/prometheus/hub-ca.crt"
        # The instance is the inventory name, as the alerts' summaries say it.
        assert [sc["labels"]["instance"] for sc in jobs[name]["static_configs"]] == \
            [t.rsplit(":", 1)[0] for t in targets[name]]
    assert config["rule_files"] == ["/etc/prometheus/hub-rules/*.yml"]


def test_amtool_accepts_the_alertmanager_configuration(site_config):
    p = subprocess.run([tool("amtool"), "check-config", str(site_config / "alertmanager.yml")],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " - 1 receivers" in p.stdout


def test_immediate_alerts_skip_the_grouping_delay_and_reach_every_receiver(site_config):
    config = yaml.safe_load((site_config / "alertmanager.yml").read_text())
    route = config["route"]
    assert route["group_wait"] == "30s"
    immediate = [r for r in route["routes"] if r["matchers"] == ['urgency="immediate"']]
    assert len(immediate) == 1 and immediate[0]["group_wait"] == "0s"
    (receiver,) = config["receivers"]
    assert [w["url"] for w in receiver["webhook_configs"]] == ["https://alerts.example.internal/hub"]
    assert [e["to"] for e in receiver["email_configs"]] == ["dba@example.internal"]
    assert all(w["send_resolved"] for w in receiver["webhook_configs"] + receiver["email_configs"])
    # amtool's routing of an immediate alert and of any other: both reach the receivers.
    for labels in (["alertname=HubArchiveJobFailed", "urgency=immediate"], ["alertname=HubTableTooLarge"]):
        p = subprocess.run([tool("amtool"), "config", "routes", "test",
                            f"--config.file={site_config / 'alertmanager.yml'}", *labels],
                           capture_output=True, text=True, check=False)
        assert p.returncode == 0 and p.stdout.strip() == "everyone", p.stdout + p.stderr
