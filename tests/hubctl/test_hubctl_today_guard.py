"""A --today later than the real date is refused for commands that change data (exit 2,
nothing done) unless the test switch HUBCTL_TEST_CLOCK=1 is in the environment.

As in test_hubctl_cli, no database: the config points at a port where nothing listens, so a
command that passes the guard fails at its first connection (exit 1) and one refused by it
exits 2 without taking the lock, recording a run or alerting.
"""

import argparse
import datetime as dt

import pytest

from hubctl.cli import COMMANDS, TEST_CLOCK_ENV, check_today
from test_hubctl_cli import DEAD_PORT, run
from hubctl_testutil import write_config

FUTURE = (dt.date.today() + dt.timedelta(days=120)).isoformat()
PAST = (dt.date.today() - dt.timedelta(days=3)).isoformat()


@pytest.fixture
def cfg(tmp_path):
    return write_config(tmp_path, port=DEAD_PORT,
                        jobs=f"lock_dir = {tmp_path}/lock\n"
                             f"alert_command = cat > {tmp_path}/alert.txt\n")


@pytest.mark.parametrize("argv", [
    ["archive"], ["daily"], ["partitions"], ["stats"], ["cold", "export"],
    ["cold", "restore", "2025-08"], ["backup", "incr"], ["convert", "status"], ["marker"],
])
def test_a_future_today_is_refused_for_a_command_that_changes_data(repo_root, tmp_path, cfg, argv):
    p = run(repo_root, "--config", cfg, "--today", FUTURE, *argv)
    assert p.returncode == 2, p
    assert f"--today {FUTURE} is later than the real date" in p.stderr
    assert "nothing done" in p.stderr
    assert p.stdout == ""                          # no log line: no lock, no record
    assert not (tmp_path / "lock").exists()
    assert not (tmp_path / "alert.txt").exists()


def test_the_test_switch_lets_a_future_today_through(repo_root, tmp_path, cfg):
    p = run(repo_root, "--config", cfg, "--today", FUTURE, "archive",
            env_extra={TEST_CLOCK_ENV: "1"})
    # past the guard: the job starts, and fails only because the database is down
    assert p.returncode == 1, p
    assert "later than the real date" not in p.stderr
    assert "step=start outcome=failed" in p.stdout


@pytest.mark.parametrize("value", ["0", "yes", "true", ""])
def test_only_the_value_1_is_the_switch(repo_root, tmp_path, cfg, value):
    p = run(repo_root, "--config", cfg, "--today", FUTURE, "archive",
            env_extra={TEST_CLOCK_ENV: value})
    assert p.returncode == 2, p


def test_a_dry_run_and_read_only_commands_may_look_ahead(repo_root, tmp_path, cfg):
    p = run(repo_root, "--config", cfg, "--dry-run", "--today", FUTURE, "daily")
    assert p.returncode == 1 and "outcome=dry-run" in p.stdout, p
    p = run(repo_root, "--config", cfg, "--today", FUTURE, "status")
    assert p.returncode == 1 and "later than the real date" not in p.stderr, p


def test_today_and_past_dates_are_not_refused():
    real = dt.date(2026, 12, 4)
    for day in (real, real - dt.timedelta(days=400), None):
        args = argparse.Namespace(today=day, dry_run=False)
        check_today(COMMANDS["archive"], args, real, environ={})
    with pytest.raises(ValueError, match="later than the real date"):
        check_today(COMMANDS["archive"], argparse.Namespace(today=real + dt.timedelta(days=1),
                                                            dry_run=False), real, environ={})


def test_every_job_and_the_writing_run_commands_are_guarded():
    mutating = {name for name, cmd in COMMANDS.items() if cmd.mutating}
    assert mutating == {"partitions", "stats", "archive", "cold", "daily", "convert", "backup",
                        "marker"}
    assert {"status", "backup-status", "metrics", "wal-check", "capacity"}.isdisjoint(mutating)
