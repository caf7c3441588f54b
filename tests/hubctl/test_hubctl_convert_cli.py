"""`hubctl convert` on the command line, without a database (nothing listens on port 1)."""

import fcntl
import os

from hubctl_testutil import run_hubctl as run
from hubctl_testutil import write_config


def test_an_unknown_phase_is_a_usage_error(repo_root, tmp_path):
    cfg = write_config(tmp_path, port=1)
    p = run(repo_root, "--config", cfg, "convert", "swapp")
    assert p.returncode == 2
    assert "invalid choice: 'swapp'" in p.stderr


def test_a_phase_that_cannot_reach_the_database_fails_with_one_line(repo_root, tmp_path):
    cfg = write_config(tmp_path, port=1)
    p = run(repo_root, "--config", cfg, "convert", "prepare")
    assert p.returncode == 1, p.stdout + p.stderr
    last = p.stdout.strip().splitlines()[-1]
    assert "job=convert step=end phase=prepare" in last and "outcome=failed" in last
    assert "Traceback" not in p.stderr


def test_a_phase_waits_for_no_other_hubctl_job(repo_root, tmp_path):
    cfg = write_config(tmp_path, port=1)
    os.makedirs(tmp_path / "lock", exist_ok=True)
    with open(tmp_path / "lock" / "hubctl.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = run(repo_root, "--config", cfg, "convert", "swap")
    assert p.returncode == 75
    assert "outcome=busy" in p.stdout
