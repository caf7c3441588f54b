"""What disaster-recovery drills (playbooks/dr-drill.yml) measure a restored copy against.

    hubctl marker         insert one row into hub_markers (cron, every 5 minutes). Not a job:
                          no lock, no hub_job_runs row, so the daily jobs' lock never refuses
                          it (and 288 run records a day would bury the real ones). Prints one
                          log line; exits 1 on failure (logged, not alerted: the daily jobs and
                          monitoring report a server that is down).
    write_manifest(job)   a step of the backup jobs (full, incr, offsite), just before
                          pgBackRest starts: the row count of every live partition, into
                          hub_backup_manifests under one taken_at.

A restored copy's newest marker against the hub's newest gives the achieved RPO; its live
partitions must hold at least the rows of the newest manifest it contains (rows are updated,
never deleted, so a later count can only be higher). Archived months are not in the manifest:
the archive ledger (hub_archived_partitions) checks them exactly.
"""

from __future__ import annotations

import argparse
import datetime as _dt

from hubctl import db, jobs
from hubctl.partitions import live_tables, read_partitions

MARKERS = "public.hub_markers"
MANIFESTS = "public.hub_backup_manifests"
MARKER_SQL = f"INSERT INTO {MARKERS} DEFAULT VALUES RETURNING id, written_at"


def qualified(schema: str, name: str) -> str:
    """The relation's name as the manifest records it: schema.name."""
    return f"{schema}.{name}"


def live_partitions(cur, partman_schema: str) -> list[tuple[str, str]]:
    """(schema, name) of every partition of every live table in partman.part_config, the
    default partitions included, sorted. The archive tables' partitions are not live."""
    found = []
    for t in live_tables(cur, partman_schema):
        parts = read_partitions(cur, t.schema, t.name)
        if parts is None:
            continue
        names = list(parts.months.values()) + parts.other
        if parts.default:
            names.append(parts.default)
        found += [(t.schema, n) for n in names]
    return sorted(found)


def manifest_rows(counts: dict[tuple[str, str], int]) -> list[tuple[str, int]]:
    """(relation, rows) for the manifest, in name order."""
    return sorted((qualified(s, n), int(c)) for (s, n), c in counts.items())


def write_manifest(job: jobs.Job) -> None:
    """Count the rows of every live partition and record them under one taken_at.

    Read committed, one count per partition: each count is taken before pgBackRest starts, so
    the backup (and any restore from it) holds at least that many rows. Under --dry-run the
    counts are logged and nothing is written.
    """
    try:
        _write_manifest(job)
    except Exception:
        # Recorded as a failed step (the job ends failed and alerts); the backup itself must
        # still run: a missing manifest costs a drill one check, a skipped backup costs data.
        pass


def _write_manifest(job: jobs.Job) -> None:
    from psycopg2 import sql
    with job.step("manifest") as st:
        with db.transaction(job.conn) as cur:
            _, _, partman_schema = db.partman_info(cur)
            counts = {}
            for schema, name in live_partitions(cur, partman_schema):
                cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
                    sql.Identifier(schema, name)))
                counts[(schema, name)] = cur.fetchone()[0]
            rows = manifest_rows(counts)
            # A field, not the step's rows: the job's rows are what it changed, and the backup
            # jobs' run records keep meaning that.
            st.set(partitions=len(rows), live_rows=sum(r for _, r in rows))
            if job.dry_run:
                st.outcome = jobs.DRY_RUN
                return
            cur.execute("SELECT now()")
            taken_at = cur.fetchone()[0]
            cur.executemany(f"INSERT INTO {MANIFESTS} (taken_at, relation, rows) "
                            "VALUES (%s, %s, %s)", [(taken_at, r, n) for r, n in rows])
            st.set(taken_at=taken_at)


# --------------------------------------------------------------------------- hubctl marker

def marker_arguments(p: argparse.ArgumentParser) -> None:
    """No options of its own."""


def insert_marker(conn) -> tuple[int, _dt.datetime]:
    """One marker row, committed; (id, written_at)."""
    with db.transaction(conn) as cur:
        cur.execute(MARKER_SQL)
        marker_id, written_at = cur.fetchone()
    return int(marker_id), written_at


def marker_run(args: argparse.Namespace, cfg, today: _dt.date, connect=db.connect,
               stream=None) -> int:
    """Insert one marker as hub_maint; exit 0, or 1 with the error on the log line."""
    log = jobs.Logger("marker", stream)
    if getattr(args, "dry_run", False):
        log.line("marker", outcome=jobs.DRY_RUN)
        return jobs.EXIT_OK
    conn = None
    try:
        conn = connect(cfg, "marker")
        marker_id, written_at = insert_marker(conn)
    except Exception as exc:
        error, sqlstate = db.describe_error(exc)
        log.line("marker", outcome=jobs.FAILED, error=error, sqlstate=sqlstate)
        return jobs.EXIT_FAILED
    finally:
        if conn is not None and not conn.closed:
            conn.close()
    log.line("marker", id=marker_id, written_at=written_at, outcome=jobs.OK)
    return jobs.EXIT_OK
