"""`hubctl cold export|restore` on the command line: bad input exits 2 and does nothing.

As in test_hubctl_cli, no database: the config points at a port where nothing listens.
"""

import pytest

from hubctl.cli import COMMANDS, build_parser
from hubctl.daily import STEPS
from hubctl import cold
from test_hubctl_cli import DEAD_PORT, run
from hubctl_testutil import write_config


@pytest.fixture
def cfg(tmp_path):
    return write_config(tmp_path, port=DEAD_PORT,
                        jobs=f"lock_dir = {tmp_path}/lock\n"
                             f"alert_command = cat > {tmp_path}/alert.txt\n")


def test_the_issue_syntax_parses():
    p = build_parser()
    a = p.parse_args(["cold", "restore", "2025-08"])
    assert (a.command, a.cold_action, a.month.isoformat(), a.table, a.job_name) == (
        "cold", "restore", "2025-08-01", "v1_hub_work_allocations", "cold-restore")
    a = p.parse_args(["--today", "2028-03-01", "cold", "export"])
    assert (a.cold_action, a.month, a.table, a.job_name, a.today.isoformat()) == (
        "export", None, None, "cold-export", "2028-03-01")
    # global options are also accepted after the action
    a = p.parse_args(["cold", "export", "--month", "2025-08", "--table", "v1_hub_proxy_toggle_logs",
                      "--dry-run", "--today", "2028-03-01"])
    assert a.dry_run and a.month.isoformat() == "2025-08-01"
    assert a.table == "v1_hub_proxy_toggle_logs"
    assert COMMANDS["cold"].body is not None


def test_daily_runs_the_cold_export_after_the_archive_and_before_partitions():
    names = [f"{s.__module__}.{s.__name__}" for s in STEPS]
    assert names.index("hubctl.archive.run") < names.index("hubctl.cold.run") \
        < names.index("hubctl.partitions.run")
    assert cold.run in STEPS


@pytest.mark.parametrize("argv, fragment", [
    (["cold"], "required"),
    (["cold", "thaw"], "invalid choice"),
    (["cold", "restore"], "required"),
    (["cold", "restore", "2025-13"], "invalid month '2025-13'"),
    (["cold", "restore", "2025-08-01"], "expected YYYY-MM"),
    (["cold", "restore", "2025-08", "--table", "v1_hub_nope"], "invalid choice"),
    (["cold", "export", "--month", "08-2025"], "expected YYYY-MM"),
    (["cold", "export", "--table", "pg_class"], "invalid choice"),
    (["cold", "export", "2025-08"], "unrecognized arguments"),
])
def test_bad_input_exits_2_and_does_nothing(repo_root, tmp_path, cfg, argv, fragment):
    p = run(repo_root, "--config", cfg, *argv)
    assert p.returncode == 2, p
    assert fragment in p.stderr
    assert p.stdout == ""
    assert not (tmp_path / "lock").exists()
    assert not (tmp_path / "alert.txt").exists()


def test_runs_are_recorded_as_cold_export_and_cold_restore(repo_root, tmp_path, cfg):
    for argv, job in ((["cold", "export"], "cold-export"),
                      (["cold", "restore", "2025-08"], "cold-restore")):
        p = run(repo_root, "--config", cfg, *argv)
        # the database is down: the job fails, under its own name, and alerts
        assert p.returncode == 1, p
        assert f" job={job} step=start outcome=failed" in p.stdout
        assert f"hubctl {job}: failed" in (tmp_path / "alert.txt").read_text()


def _row(state):
    return cold.LedgerRow("v1_hub_work_allocations_p2025_08", 10, 99, state, None, None, None, True)


def test_a_restore_that_names_nothing_is_the_operators_input():
    """cold restore of a month never archived, or still in the database, or restored already:
    a reason (exit 2 before the job, no record, no alert); a cold month: None."""
    import datetime as dt
    t, m = "v1_hub_work_allocations", dt.date(1999, 1, 1)
    assert "never archived" in cold.not_restorable(t, m, None, False)
    assert "1999-01" in cold.not_restorable(t, m, None, False)
    assert "query v1_hub_work_allocations_archive" in cold.not_restorable(t, m, _row("archived"), False)
    assert cold.not_restorable(t, m, _row("live"), False).endswith("query v1_hub_work_allocations")
    assert "hub_restored.v1_hub_work_allocations_p1999_01 already exists" in \
        cold.not_restorable(t, m, _row("cold"), True)
    assert cold.not_restorable(t, m, _row("cold"), False) is None


def test_the_refusal_names_the_months_that_can_be_restored():
    import datetime as dt
    t = "v1_hub_work_allocations"
    assert cold.cold_months_text(t, {}) == f"{t} has no month in cold files yet"
    few = {dt.date(2025, 1, 1): "cold", dt.date(2025, 2, 1): "cold", dt.date(2025, 3, 1): "archived"}
    assert cold.cold_months_text(t, few) == f"cold months of {t}: 2025-01, 2025-02"
    many = {dt.date(2024, k, 1): "cold" for k in range(1, 13)}
    assert cold.cold_months_text(t, many) == f"cold months of {t}: 12, 2024-01 .. 2024-12"
