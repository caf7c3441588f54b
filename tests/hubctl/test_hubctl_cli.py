"""The command line, run as `python -m hubctl` in a subprocess.

No database server: the config points at 127.0.0.1 port 1, where nothing listens, so every
connection is refused at once. That is enough to check usage errors, config errors, the lock
(busy), the failure path and the alert command.
"""

import os

import pytest

from hubctl.jobs import JobLock
from hubctl_testutil import run_hubctl as run
from hubctl_testutil import write_config

DEAD_PORT = 1


@pytest.fixture
def alert_cfg(tmp_path):
    """A config with a dead database and an alert command that keeps what it was given."""
    alert = (f"cat > {tmp_path}/alert.txt; "
             f"env > {tmp_path}/alert.env")
    return write_config(tmp_path, port=DEAD_PORT,
                        jobs=f"lock_dir = {tmp_path}/lock\nalert_command = {alert}\n")


def test_bad_today_is_a_usage_error_and_does_nothing(repo_root, tmp_path, alert_cfg):
    for argv in (["--config", alert_cfg, "--today", "2026-13-01", "daily"],
                 ["--config", alert_cfg, "daily", "--today", "2026-13-01"]):
        p = run(repo_root, *argv)
        assert p.returncode == 2, p
        assert "invalid date '2026-13-01'" in p.stderr
        assert "month must be in 1..12" in p.stderr
        assert p.stdout == ""
    assert not (tmp_path / "lock").exists()        # no lock taken
    assert not (tmp_path / "alert.txt").exists()   # no alert


@pytest.mark.parametrize("argv, fragment", [
    (["--today", "2026-11-26", "stats", "--from", "2026-11-01"], "must be given together"),
    (["--today", "2026-11-26", "stats", "--from", "2026-11-10", "--to", "2026-11-01"],
     "is after --to"),
    (["--today", "2026-11-26", "stats", "--date", "2026-11-27"], "not before today"),
    (["--today", "2026-11-26", "stats", "--date", "2026-11-02", "--from", "2026-11-01",
      "--to", "2026-11-02"], "not both"),
    (["stats", "--date", "26-11-01"], "expected YYYY-MM-DD"),
    (["cold-export"], "invalid choice"),
    ([], "required"),
    (["status", "--bogus"], "unrecognized arguments"),
])
def test_usage_errors_exit_2(repo_root, tmp_path, alert_cfg, argv, fragment):
    p = run(repo_root, "--config", alert_cfg, *argv)
    assert p.returncode == 2, p
    assert fragment in p.stderr
    assert p.stdout == ""
    assert not (tmp_path / "lock").exists()


def test_missing_config_exits_78(repo_root, tmp_path):
    p = run(repo_root, "--config", str(tmp_path / "none.conf"), "daily")
    assert p.returncode == 78
    assert "config file" in p.stdout and "does not exist" in p.stdout
    p = run(repo_root, "--config", str(tmp_path / "none.conf"), "status")
    assert p.returncode == 78
    assert "does not exist" in p.stderr


def test_missing_passfile_exits_78_and_alerts(repo_root, tmp_path):
    cfg = write_config(tmp_path, passfile=str(tmp_path / "gone.pgpass"), port=DEAD_PORT,
                       jobs=f"lock_dir = {tmp_path}/lock\n"
                            f"alert_command = cat > {tmp_path}/alert.txt\n")
    p = run(repo_root, "--config", cfg, "partitions")
    assert p.returncode == 78, p
    assert "step=config" in p.stdout and "gone.pgpass does not exist" in p.stdout
    assert "gone.pgpass does not exist" in (tmp_path / "alert.txt").read_text()


def test_busy_exits_75_does_nothing_and_alerts(repo_root, tmp_path, alert_cfg):
    holder = JobLock(str(tmp_path / "lock"))
    assert holder.acquire("daily")
    try:
        p = run(repo_root, "--config", alert_cfg, "--today", "2026-11-26", "stats",
                env_extra={"PGPASSWORD": "must-not-leak"})
    finally:
        holder.release()
    assert p.returncode == 75, p
    assert " job=stats step=lock " in p.stdout and "outcome=busy" in p.stdout
    assert "step=stats " not in p.stdout          # no step ran
    # the database is down here, so the busy record could not be written: said so
    assert "step=record outcome=failed" in p.stdout
    text = (tmp_path / "alert.txt").read_text()
    assert "hubctl stats: busy" in text and f"pid={os.getpid()} job=daily" in text
    env = (tmp_path / "alert.env").read_text()
    assert "HUB_ALERT_JOB=stats" in env and "HUB_ALERT_OUTCOME=busy" in env
    assert "must-not-leak" not in env


def test_failure_exits_1_and_alerts(repo_root, tmp_path, alert_cfg):
    p = run(repo_root, "--config", alert_cfg, "--today", "2026-11-26", "daily")
    assert p.returncode == 1, p
    assert "step=start outcome=failed" in p.stdout
    assert "step=alert rc=0" in p.stdout
    env = (tmp_path / "alert.env").read_text()
    assert "HUB_ALERT_JOB=daily" in env and "HUB_ALERT_OUTCOME=failed" in env
    assert "cannot record the run" in (tmp_path / "alert.txt").read_text()
    # the lock was taken and released: a second run is not busy
    lock = JobLock(str(tmp_path / "lock"))
    assert lock.acquire("x")
    lock.release()


def test_failing_alert_command_does_not_hide_the_outcome(repo_root, tmp_path):
    cfg = write_config(tmp_path, port=DEAD_PORT,
                       jobs=f"lock_dir = {tmp_path}/lock\n"
                            "alert_command = echo 'webhook down' >&2; exit 7\n")
    p = run(repo_root, "--config", cfg, "partitions")
    assert p.returncode == 1, p
    assert 'step=alert rc=7' in p.stdout and 'output="webhook down"' in p.stdout
    lines = [ln for ln in p.stdout.splitlines() if " step=end " in ln]
    assert len(lines) == 1 and "outcome=failed" in lines[0]


def test_dry_run_takes_no_lock_and_fires_no_alert(repo_root, tmp_path, alert_cfg):
    holder = JobLock(str(tmp_path / "lock"))
    assert holder.acquire("daily")
    try:
        p = run(repo_root, "--config", alert_cfg, "--dry-run", "stats", "--date", "2026-01-01",
                "--today", "2026-01-02")
    finally:
        holder.release()
    # not busy (75): a dry run does not take the lock; it fails only because the
    # database is unreachable, and a dry run never alerts
    assert p.returncode == 1, p
    assert "step=lock" in p.stdout and "outcome=dry-run" in p.stdout
    assert not (tmp_path / "alert.txt").exists()


def test_status_with_database_down_exits_1_without_lock(repo_root, tmp_path, alert_cfg):
    p = run(repo_root, "--config", alert_cfg, "status")
    assert p.returncode == 1
    assert "job=status step=status outcome=failed" in p.stdout
    assert not (tmp_path / "lock").exists()
    assert not (tmp_path / "alert.txt").exists()


def test_version(repo_root):
    p = run(repo_root, "--version")
    assert p.returncode == 0 and p.stdout.startswith("hubctl ")
