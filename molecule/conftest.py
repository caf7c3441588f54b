"""Helpers shared by every scenario's testinfra tests.

Tests check what an operator would check on the host: services, mounts, files, and what
PostgreSQL answers. When a test fails, the journal of the PostgreSQL units is printed with it.
"""

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import testinfra


def _inventory_hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_hosts(["ansible://all"], ansible_inventory=inventory)


# hubctl as the cron jobs run it, with the test clock switch: a job given a --today later
# than the real date runs only with HUBCTL_TEST_CLOCK=1, which production never sets.
HUBCTL_PRODUCTION = "sudo -u hubmaint /usr/local/bin/hubctl"
HUBCTL = "sudo -u hubmaint env HUBCTL_TEST_CLOCK=1 /usr/local/bin/hubctl"

SECRETS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", ".")) / "secrets"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY") or Path(__file__).resolve().parents[1])


def ansible_playbook(playbook, *args: str, timeout: int = 1800) -> tuple[int, str]:
    """Run one of the project's playbooks from the controller against the scenario's inventory,
    from the project directory, with Molecule's ansible.cfg (ANSIBLE_CONFIG, which Molecule sets
    for the verifier) and the project's roles. Returns the exit code and the output (stdout,
    then stderr, where Ansible prints a failed task)."""
    run = subprocess.run(
        ["ansible-playbook", str(PROJECT / playbook), "-i", os.environ["MOLECULE_INVENTORY_FILE"], *args],
        capture_output=True, text=True, timeout=timeout, cwd=PROJECT, check=False,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(PROJECT / "roles"),
             "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"},
    )
    return run.returncode, run.stdout + run.stderr


def flat(text: str) -> str:
    """Output with its line wrapping undone, to find a long message in it."""
    return " ".join(text.split())


def host_of(group: str):
    """The testinfra host of the scenario's first host in an inventory group."""
    hosts = testinfra.get_hosts([f"ansible://{group}"], ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
    assert hosts, f"no host in group {group}"
    return hosts[0]


@pytest.fixture(scope="module")
def hub():
    """The hub_db host, for tests that reach more than one host."""
    return host_of("hub_db")


@pytest.fixture(scope="module")
def offsite():
    """The backup_offsite host."""
    return host_of("backup_offsite")


@pytest.fixture(scope="module")
def target():
    """The dr_target host a DR drill restores onto."""
    return host_of("dr_target")


def secret(name: str) -> str:
    """A password the scenario generated into Molecule's ephemeral directory."""
    return (SECRETS / name).read_text().split()[0]


@pytest.fixture(scope="module")
def version(host):
    """The PostgreSQL major version on the host: the inventory's, or the release's own."""
    return host.ansible.get_variables().get("postgresql_version") or (
        "15" if host.system_info.release.startswith("12") else "17"
    )


def psql(host, sql, db: str = "hub", check: bool = True):
    """Run SQL as the postgres OS user over the local socket; return stdout (stripped).

    `sql` is one statement, or a list of statements run in order in one session (one -c each),
    e.g. ["BEGIN", "SET ROLE hub_app", "INSERT ...", "SELECT ...", "ROLLBACK"].
    """
    statements = [sql] if isinstance(sql, str) else list(sql)
    cmd = host.run(
        "sudo -u postgres psql -XAtq -v ON_ERROR_STOP=1 -d " + shlex.quote(db)
        + "".join(" -c " + shlex.quote(statement) for statement in statements)
    )
    if check:
        assert cmd.rc == 0, f"psql failed: {cmd.stderr}"
        return cmd.stdout.strip()
    return cmd


ALERTS = "/var/log/hub/alerts.log"


def alerts(host, since: int = 0) -> str:
    """What the alert command wrote to the hub's alert log, after the first `since` characters
    (alert_mark before the action under test): a check then sees only this action's alerts."""
    text = host.file(ALERTS).content_string if host.file(ALERTS).exists else ""
    return text[since:]


def alert_mark(host) -> int:
    """The alert log's length now, for alerts(host, since=...)."""
    return len(alerts(host))


RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(output: str) -> dict:
    """{host: changed} from an ansible-playbook run's PLAY RECAP."""
    found = {m.group(1): int(m.group(2)) for m in RECAP.finditer(output)}
    assert found, "no PLAY RECAP in the output:\n" + output[-2000:]
    return found


def assert_nothing_changed(output: str) -> None:
    """Every host of the run's recap says changed=0."""
    changed = {h: n for h, n in recap(output).items() if n}
    assert not changed, f"changed on {changed}:\n{output[-3000:]}"


def run_cron_now(hub, name: str, cron_file: str = "/etc/cron.d/hub-maintenance"):
    """Run the cron line of `hubctl <name>` now, as hubmaint, rather than at its next time;
    returns its result."""
    line = [ln for ln in hub.file(cron_file).content_string.splitlines()
            if f"/usr/local/bin/hubctl {name} " in ln][0]
    command = line.split("hubmaint", 1)[1].split(">>", 1)[0].strip()
    return hub.run(f"sudo -u hubmaint {command}")


def run_metrics_now(hub):
    """hubctl metrics' cron line now (exit 1: a source could not be read, the file is still
    written)."""
    return run_cron_now(hub, "metrics")


def psql_as(host, user: str, sql: str, sslmode: str = "require", db: str = "hub", conninfo: str = ""):
    """Connect over TCP to 127.0.0.1 as `user` (`conninfo`: further libpq options). The password
    travels in a pgpass file that is written on the controller and copied by path, so it is
    never on a command line."""
    local = SECRETS / f"pgpass-{user}"
    local.touch(mode=0o600)
    escaped = secret(user).replace("\\", "\\\\").replace(":", "\\:")  # libpq's pgpass escaping
    local.write_text(f"127.0.0.1:*:*:{user}:{escaped}\n")
    pgpass = f"/root/.pgpass-{user}"
    host.ansible("ansible.builtin.copy", f"src={local} dest={pgpass} mode=0600", check=False)
    try:
        options = f"host=127.0.0.1 dbname={db} user={user} sslmode={sslmode} {conninfo}".strip()
        return host.run(
            f"PGPASSFILE={pgpass} psql -XAtq -v ON_ERROR_STOP=1 {shlex.quote(options)} -c {shlex.quote(sql)}"
        )
    finally:
        host.run(f"rm -f {pgpass}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test, attach the last lines of the PostgreSQL journal to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for host in _inventory_hosts():
        journal = host.run("journalctl --no-pager -n 40 -u 'postgresql*'")
        report.sections.append((f"journal of {host.backend.get_hostname()}", journal.stdout))
