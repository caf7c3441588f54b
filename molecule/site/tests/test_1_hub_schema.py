"""The hub's schema as the application and the operator see it after site.yml."""

import os
from pathlib import Path

import pytest
from conftest import psql

# The hub only: the off-site backup host has its own tests (test_6_backup.py).
testinfra_hosts = ["ansible://hub_db"]

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])

LIVE = {
    "v1_hub_work_allocations": "work_date",
    "v1_hub_client_activity_logs": "log_date",
    "v1_hub_proxy_toggle_logs": "log_date",
    "v1_hub_work_slots_history": "work_date",
}

# One row for a given date, per table, with only the columns the application must give.
INSERT = {
    "v1_hub_work_allocations": "INSERT INTO v1_hub_work_allocations (work_date, client_id, keyword) "
    "SELECT d::date, 'client-1', 'keyword' FROM {days}",
    "v1_hub_client_activity_logs": "INSERT INTO v1_hub_client_activity_logs (log_date, client_id, activity) "
    "SELECT d::date, 'client-1', 'connect' FROM {days}",
    "v1_hub_proxy_toggle_logs": "INSERT INTO v1_hub_proxy_toggle_logs (log_date, proxy_id, enabled) "
    "SELECT d::date, 7, true FROM {days}",
    "v1_hub_work_slots_history": "INSERT INTO v1_hub_work_slots_history (work_date, slot_id, event) "
    "SELECT d::date, 3, 'opened' FROM {days}",
}


def test_every_migration_is_recorded_once(host):
    files = sorted(p.name for p in (PROJECT / "files" / "sql" / "migrations").glob("*.sql"))
    rows = psql(host, "SELECT name FROM hub_schema_migrations ORDER BY version").splitlines()
    assert len(files) >= 4
    assert rows == files


def test_pg_partman_manages_the_live_tables(host):
    assert psql(host, "SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'pg_partman'") == "partman"
    parents = psql(host, "SELECT parent_table FROM partman.part_config ORDER BY 1").splitlines()
    assert parents == sorted(f"public.{table}" for table in LIVE)


@pytest.mark.parametrize("table", sorted(LIVE))
def test_live_and_archive_tables_are_partitioned_by_month(host, table):
    for name in (table, f"{table}_archive"):
        kind = psql(host, f"SELECT relkind FROM pg_class WHERE oid = 'public.{name}'::regclass")
        assert kind == "p", name
    key = psql(host, f"SELECT pg_get_partkeydef('public.{table}'::regclass)")
    assert key == f"RANGE ({LIVE[table]})"


@pytest.mark.parametrize("table", sorted(LIVE))
def test_every_day_of_the_live_window_has_a_month_partition(host, table):
    # From 90 days back to three months ahead (so partitions exist at least that far), as the application (hub_app) inserts them,
    # nothing may land in the default partition. The transaction is rolled back.
    days = "generate_series(CURRENT_DATE - 90, CURRENT_DATE + 92, '1 day') AS g(d)"
    out = psql(
        host,
        [
            "BEGIN",
            "SET ROLE hub_app",
            INSERT[table].format(days=days),
            f"SELECT count(*) FILTER (WHERE tableoid = 'public.{table}_default'::regclass) || ' ' || count(*) FROM {table}",
            "ROLLBACK",
        ],
    )
    assert out.splitlines()[-1] == "0 183"


def test_a_row_outside_every_partition_lands_in_the_default_partition(host):
    out = psql(
        host,
        [
            "BEGIN",
            "SET ROLE hub_app",
            INSERT["v1_hub_work_allocations"].format(days="(SELECT CURRENT_DATE + 3650) AS t(d)"),
            "SELECT tableoid::regclass FROM v1_hub_work_allocations",
            "ROLLBACK",
        ],
    )
    assert out.splitlines()[-1] == "v1_hub_work_allocations_default"


def test_the_seeds_open_allocation_index_is_on_every_partition(host):
    partitions = int(psql(host, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'v1_hub_work_allocations'::regclass"))
    partial = int(
        psql(
            host,
            "SELECT count(*) FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indrelid "
            "WHERE i.inhparent = 'v1_hub_work_allocations'::regclass "
            "AND pg_get_expr(x.indpred, x.indrelid) = '(status = ''allocated''::text)'",
        )
    )
    assert partitions >= 5
    assert partial == partitions


def test_daily_stats_has_the_seeds_columns(host):
    columns = psql(
        host,
        "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns "
        "WHERE table_name = 'v1_hub_daily_stats'",
    )
    assert columns.split(",") == [
        "stat_date",
        "total_allocations",
        "completed_count",
        "expired_count",
        "avg_execution_time_ms",
        "unique_clients",
        "unique_keywords",
        "created_at",
    ]
    assert psql(host, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'v1_hub_daily_stats'::regclass AND contype = 'p'") == "PRIMARY KEY (stat_date)"


def test_the_application_cannot_write_archive_or_job_records(host):
    for table in ["v1_hub_work_allocations_archive", "hub_job_runs", "hub_archived_partitions", "hub_schema_migrations"]:
        result = psql(host, ["SET ROLE hub_app", f"DELETE FROM {table}"], check=False)
        assert result.rc != 0, table
        assert "permission denied" in result.stderr, table


def test_a_detached_month_attaches_to_the_archive(host):
    # The archive's method in one transaction, rolled back: the month moves without copying.
    month = psql(
        host,
        "SELECT c.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'v1_hub_work_allocations'::regclass AND c.relname NOT LIKE '%default' "
        "ORDER BY pg_get_expr(c.relpartbound, c.oid) LIMIT 1",
    )
    bound = psql(host, f"SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = '{month}'::regclass")
    out = psql(
        host,
        [
            "BEGIN",
            "SET ROLE hub_owner",
            f"ALTER TABLE v1_hub_work_allocations DETACH PARTITION {month}",
            f"ALTER TABLE v1_hub_work_allocations_archive ATTACH PARTITION {month} {bound}",
            f"SELECT inhparent::regclass FROM pg_inherits WHERE inhrelid = '{month}'::regclass",
            "ROLLBACK",
        ],
    )
    assert out.splitlines()[-1] == "v1_hub_work_allocations_archive"
