"""The archive step on real data: a month leaves the live table whole, late rows follow it.

Runs last (file order): it moves time forward for the oldest live month, after the schema
and maintenance tests have checked the live window against the real date."""

import datetime

import pytest
from conftest import psql

# The hub only: the off-site backup host has its own tests (test_6_backup.py).
testinfra_hosts = ["ansible://hub_db"]

HUBCTL = "sudo -u hubmaint /usr/local/bin/hubctl"
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
