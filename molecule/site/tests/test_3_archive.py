"""The archive step on real data: a month leaves the live table whole, late rows follow it.

Runs last (file order): it moves time forward for the oldest live month, after the schema
and maintenance tests have checked the live window against the real date."""

import datetime

import pytest
from conftest import HUBCTL, HUBCTL_PRODUCTION, psql, psql_as

# The hub only: the off-site backup host has its own tests (test_6_backup.py).
testinfra_hosts = ["ansible://hub_db"]

CHECKSUM = "coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"


@pytest.fixture(scope="module")
def month(host):
    """The oldest live month of v1_hub_work_allocations, with 100 rows in it, and the day on
    which it has been over for exactly 90 days."""
    first = psql(
        host,
        "SELECT min(substring(pg_get_expr(c.relpartbound, c.oid) FROM '\\d{4}-\\d{2}-\\d{2}')) "
        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'v1_hub_work_allocations'::regclass AND c.relname NOT LIKE '%default'",
    )
    start = datetime.date.fromisoformat(first)
    end = (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    psql(
        host,
        [
            "SET ROLE hub_app",
            "INSERT INTO v1_hub_work_allocations (work_date, client_id, keyword, status) "
            f"SELECT DATE '{start}' + (i % 28), 'c' || (i % 5), 'k' || i, 'completed' FROM generate_series(1, 100) i",
        ],
    )
    return start, end, end + datetime.timedelta(days=90)


def rows_of(host, table, start, end):
    return int(psql(host, f"SELECT count(*) FROM {table} WHERE work_date >= '{start}' AND work_date < '{end}'"))


def ledger(host, start):
    return psql(
        host,
        "SELECT row_count || ' ' || checksum || ' ' || state FROM hub_archived_partitions "
        f"WHERE parent_table = 'v1_hub_work_allocations' AND month = '{start}'",
    )


def job_runs(host) -> str:
    return psql(host, "SELECT count(*) || ' ' || coalesce(max(id), 0) FROM hub_job_runs")


def test_a_future_today_without_the_test_switch_is_refused_and_changes_nothing(host, month):
    """hubctl as production runs it (no HUBCTL_TEST_CLOCK): a --today past the real date would
    archive the month the application still writes to; exit 2, no run, nothing moved."""
    start, end, _ = month
    future = datetime.date.today() + datetime.timedelta(days=200)
    partition = psql(host, f"SELECT tableoid::regclass FROM v1_hub_work_allocations WHERE work_date = '{start}' LIMIT 1")
    before = job_runs(host)
    for args in (f"archive --today {future}", f"daily --today {future}", f"cold export --today {future}"):
        result = host.run(f"{HUBCTL_PRODUCTION} {args}")
        assert result.rc == 2, result.stdout + result.stderr
        assert f"--today {future} is later than the real date" in result.stderr
        assert result.stdout == ""
    assert job_runs(host) == before
    assert psql(host, f"SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = '{partition}'::regclass") == (
        "v1_hub_work_allocations"
    )


def app_writes(host, sql):
    return psql_as(host, "hub_app", sql)


def test_a_month_older_than_90_days_moves_to_the_archive_without_copying(host, month):
    start, end, today = month
    partition = psql(host, f"SELECT tableoid::regclass FROM v1_hub_work_allocations WHERE work_date = '{start}' LIMIT 1")
    relfilenode = psql(host, f"SELECT pg_relation_filenode('{partition}')")

    result = host.run(f"{HUBCTL} archive --today {today}")
    assert result.rc == 0, result.stdout + result.stderr
    assert f"month={start:%Y-%m}" in result.stdout

    assert psql(host, f"SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = '{partition}'::regclass") == (
        "v1_hub_work_allocations_archive"
    )
    # The same file on disk: the rows were not copied.
    assert psql(host, f"SELECT pg_relation_filenode('{partition}')") == relfilenode
    assert rows_of(host, "v1_hub_work_allocations", start, end) == 0
    assert rows_of(host, "v1_hub_work_allocations_archive", start, end) == 100
    checksum = psql(host, f"SELECT {CHECKSUM} FROM ONLY {partition} t")
    assert ledger(host, start) == f"100 {checksum} archived"
    assert "read_only_for=hub_app" in result.stdout


def test_the_application_cannot_edit_an_archived_month_by_the_partitions_name(host, month):
    start, end, _ = month
    partition = psql(host, f"SELECT tableoid::regclass FROM v1_hub_work_allocations_archive WHERE work_date = '{start}' LIMIT 1")
    for sql in (f"UPDATE {partition} SET keyword = 'edited' WHERE work_date = '{start}'",
                f"DELETE FROM {partition} WHERE work_date = '{start}'",
                f"INSERT INTO {partition} (work_date, client_id, keyword, status) VALUES ('{start}', 'c', 'k', 'completed')",
                f"TRUNCATE {partition}"):
        denied = app_writes(host, sql)
        assert denied.rc != 0 and "permission denied" in denied.stderr, (sql, denied.stdout, denied.stderr)
    read = app_writes(host, f"SELECT count(*) FROM v1_hub_work_allocations_archive WHERE work_date >= '{start}' AND work_date < '{end}'")
    assert read.rc == 0 and read.stdout.strip() == "100", read.stderr
    assert rows_of(host, "v1_hub_work_allocations_archive", start, end) == 100
    # The live months stay the application's to write.
    live = psql(host, "SELECT min(c.oid::regclass::text) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                      "WHERE i.inhparent = 'v1_hub_work_allocations'::regclass AND c.relname NOT LIKE '%default'")
    assert psql(host, f"SELECT has_table_privilege('hub_app', '{live}', 'UPDATE')") == "t"


def test_a_write_privilege_granted_again_is_taken_by_the_next_run(host, month):
    """A month archived before this rule (or a grant by hand): the next run revokes it."""
    start, _, today = month
    partition = psql(host, f"SELECT tableoid::regclass FROM v1_hub_work_allocations_archive WHERE work_date = '{start}' LIMIT 1")
    psql(host, ["SET ROLE hub_owner", f"GRANT INSERT, UPDATE, DELETE ON {partition} TO hub_app, hub_readonly"])
    assert psql(host, f"SELECT has_table_privilege('hub_app', '{partition}', 'UPDATE')") == "t"
    result = host.run(f"{HUBCTL} archive --today {today}")
    assert result.rc == 0, result.stdout + result.stderr
    line = next(ln for ln in result.stdout.splitlines() if "step=archive_protect" in ln)
    assert f"partition={partition}" in line and "revoke_from=hub_app,hub_readonly" in line, line
    for role in ("hub_app", "hub_readonly"):
        for priv in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
            assert psql(host, f"SELECT has_table_privilege('{role}', '{partition}', '{priv}')") == "f", (role, priv)
    again = host.run(f"{HUBCTL} archive --today {today}")
    assert again.rc == 0 and "step=archive_protect" not in again.stdout, again.stdout


def test_the_archived_month_gets_no_new_live_partition(host, month):
    start, end, today = month
    result = host.run(f"{HUBCTL} partitions --today {today}")
    assert result.rc == 0, result.stdout + result.stderr
    live = psql(
        host,
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'v1_hub_work_allocations'::regclass "
        f"AND pg_get_expr(c.relpartbound, c.oid) LIKE '%FROM (''{start}'')%'",
    )
    assert live == "0"


def test_a_late_row_for_an_archived_month_follows_it_into_the_archive(host, month):
    start, end, today = month
    landed = psql(
        host,
        [
            "SET ROLE hub_app",
            "INSERT INTO v1_hub_work_allocations (work_date, client_id, keyword) "
            f"VALUES ('{start}', 'late', 'k') RETURNING tableoid::regclass",
        ],
    )
    assert landed.splitlines()[-1] == "v1_hub_work_allocations_default"

    result = host.run(f"{HUBCTL} archive --today {today}")
    assert result.rc == 0, result.stdout + result.stderr
    assert "step=late_rows" in result.stdout

    assert rows_of(host, "v1_hub_work_allocations_default", start, end) == 0
    assert rows_of(host, "v1_hub_work_allocations_archive", start, end) == 101
    partition = psql(host, f"SELECT tableoid::regclass FROM v1_hub_work_allocations_archive WHERE work_date = '{start}' LIMIT 1")
    checksum = psql(host, f"SELECT {CHECKSUM} FROM ONLY {partition} t")
    assert ledger(host, start) == f"101 {checksum} archived"


def test_a_second_archive_run_changes_nothing(host, month):
    start, end, today = month
    before = ledger(host, start)
    result = host.run(f"{HUBCTL} archive --today {today}")
    assert result.rc == 0, result.stdout + result.stderr
    assert ledger(host, start) == before
    assert rows_of(host, "v1_hub_work_allocations_archive", start, end) == 101
