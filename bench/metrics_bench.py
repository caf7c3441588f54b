#!/usr/bin/env python3
"""Time `hubctl metrics` on a catalogue the size of year 5.

Builds a scratch PostgreSQL cluster of its own (initdb in --workdir, port 5499, Unix socket in
that directory only, no TCP, pg_stat_statements preloaded), creates the hub's roles, pg_partman
and every migration of files/sql/migrations/ as the hub_schema role applies them, then gives each
of the four live tables --months archived monthly partitions (attached to its _archive twin,
with a ledger row 'archived' each, the state hubctl archive leaves) before the live window, and
--months x 31 days of daily size snapshots (what the capacity source reads). It
then runs the real command, `python3 -m hubctl --config ... metrics --textfile ... --volume
data=...`, --runs times (a new process each time, as cron starts it) and reports the wall time
of each run and the duration hubctl reports in the file (hub_metrics_duration_seconds).

The partitions are empty: the sizes come from pg_total_relation_size and the row counts from
reltuples and the ledger, so the catalogue's size (relations to look at), not the rows, is what
the queries scale with. --stanza is left out: `pgbackrest info` is one subprocess whose time
does not depend on the catalogue.

Run as the postgres OS user on a host with PostgreSQL, pg_partman and python3-psycopg2:

    sudo -u postgres python3 bench/metrics_bench.py --months 60 --runs 10

Removes its cluster and --workdir at the end unless --keep.
"""

import argparse
import datetime as dt
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import psycopg2
from psycopg2 import sql

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 5499
ROLES = """
CREATE ROLE hub_owner NOLOGIN;
CREATE ROLE hub_app LOGIN;
CREATE ROLE hub_maint LOGIN IN ROLE hub_owner, pg_monitor;
CREATE ROLE hub_monitor LOGIN IN ROLE pg_monitor;
CREATE ROLE hub_readonly LOGIN;
"""


def pg_bin() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        sys.exit("no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb)")
    return os.path.dirname(found[-1])


def add_months(d: dt.date, n: int) -> dt.date:
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return dt.date(y, m + 1, 1)


def build(workdir: str, months: int) -> None:
    bindir = pg_bin()
    data = os.path.join(workdir, "data")
    subprocess.run([f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--data-checksums"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([f"{bindir}/pg_ctl", "-D", data, "-l", os.path.join(workdir, "server.log"), "-w", "-o",
                    f"-p {PORT} -k {workdir} -c listen_addresses='' "
                    "-c shared_preload_libraries=pg_stat_statements", "start"], check=True, stdout=subprocess.DEVNULL, start_new_session=True)
    admin = psycopg2.connect(host=workdir, port=PORT, dbname="postgres", user="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(ROLES)
        cur.execute("CREATE DATABASE hub OWNER hub_owner")
    admin.close()
    conn = psycopg2.connect(host=workdir, port=PORT, dbname="hub", user="postgres")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("CREATE EXTENSION pg_stat_statements")
    cur.execute("CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman")
    cur.execute("GRANT USAGE, CREATE ON SCHEMA partman TO hub_owner; "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA partman TO hub_owner; "
                "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO hub_owner")
    cur.execute("DO $$ BEGIN EXECUTE 'GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO hub_owner'; END $$")
    for path in sorted(glob.glob(os.path.join(ROOT, "files/sql/migrations/*.sql"))):
        print(f"# migration {os.path.basename(path)}", flush=True)
        cur.execute("BEGIN; SET LOCAL ROLE hub_owner")
        cur.execute(open(path, encoding="utf-8").read())
        cur.execute("COMMIT")
    cur.execute("SELECT parent_table FROM partman.part_config ORDER BY 1")
    parents = [r[0] for r in cur.fetchall()]
    # The oldest live partition partman made: the archive ends the month before it.
    first_live = None
    for parent in parents:
        cur.execute("""SELECT min(substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$FROM \\('([0-9-]+)'\\)$re$))
                       FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                       WHERE i.inhparent = %s::regclass""", (parent,))
        low = dt.date.fromisoformat(cur.fetchone()[0])
        first_live = low if first_live is None else min(first_live, low)
    start = add_months(first_live, -months)
    print(f"# {months} archived months x {len(parents)} tables, {start} .. {add_months(first_live, -1)}", flush=True)
    cur.execute("BEGIN; SET LOCAL ROLE hub_owner")
    for parent in parents:
        schema, name = parent.split(".")
        for i in range(months):
            month = add_months(start, i)
            part = f"{name}_p{month:%Y%m%d}"
            cur.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM (%s) TO (%s)").format(
                sql.Identifier(schema, part), sql.Identifier(schema, name + "_archive")),
                (month, add_months(month, 1)))
            cur.execute("INSERT INTO hub_archived_partitions (parent_table, month, partition_name, row_count, "
                        "checksum, checksum_columns, state, verified_at) "
                        "VALUES (%s, %s, %s, 0, md5(''), ARRAY['id'], 'archived', now())",
                        (name, month, part))
    # Five years of the daily job's size snapshots (migration 0009), which the capacity source
    # reads every run: 3 tiers x the tables, pg_wal, the database and two volumes, each day.
    days = months * 31
    cur.execute("""INSERT INTO hub_size_snapshots (taken_on, subject, tier, bytes, index_bytes, rows, volume_bytes)
                   SELECT current_date - d, t.subject, t.tier, 1000000 * (days - d), NULL, NULL,
                          CASE WHEN t.tier = 'volume' THEN 500000000000 END
                   FROM generate_series(0, %(days)s - 1) d, (VALUES (%(days)s)) n(days),
                        (SELECT split_part(p, '.', 2) AS subject, tier FROM unnest(%(parents)s::text[]) p,
                                unnest(ARRAY['live', 'archive', 'cold']) tier
                         UNION ALL VALUES ('pg_wal', 'wal'), ('database', 'database'),
                                          ('data', 'volume'), ('repo1', 'volume')) t""",
                {"days": days, "parents": parents})
    print(f"# {cur.rowcount} size snapshots over {days} days", flush=True)
    cur.execute("COMMIT")
    cur.execute("ANALYZE")
    cur.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace")
    print(f"# catalogue: {cur.fetchone()[0]} relations in public", flush=True)
    conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--months", type=int, default=60)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--workdir", default="/var/tmp/bench-metrics")
    ap.add_argument("--out", default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    workdir = os.path.abspath(args.workdir)
    if os.path.exists(workdir):
        sys.exit(f"{workdir} exists: remove it first (a kept cluster: pg_ctl -D {workdir}/data stop)")
    os.makedirs(workdir, mode=0o700)
    try:
        build(workdir, args.months)
        pgpass = os.path.join(workdir, "pgpass")
        with open(os.open(pgpass, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write("*:*:*:*:unused\n")
        config = os.path.join(workdir, "hubctl.conf")
        with open(config, "w") as f:
            f.write(f"[database]\nhost = {workdir}\nport = {PORT}\ndbname = hub\nuser = hub_maint\n"
                    f"sslmode = disable\npassfile = {pgpass}\n[jobs]\nlock_dir = {workdir}\n")
        textfile = os.path.join(workdir, "hub.prom")
        walls, reported = [], []
        for i in range(args.runs):
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, "-m", "hubctl", "--config", config, "metrics", "--textfile", textfile,
                                "--volume", f"data={workdir}"], cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
            walls.append(time.monotonic() - t0)
            if p.returncode != 0:
                print(p.stdout, p.stderr, file=sys.stderr)
                return 1
            text = open(textfile).read()
            reported.append(float(re.search(r"^hub_metrics_duration_seconds (\S+)", text, re.M).group(1)))
        series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
        parts = re.findall(r'^hub_table_partitions\{table="([^"]+)",tier="archive"\} (\S+)', text, re.M)
        result = {
            "months": args.months, "runs": args.runs, "series": series,
            "archive_partitions": {t: int(float(n)) for t, n in parts},
            "wall_s": {"median": round(statistics.median(walls), 3), "max": round(max(walls), 3)},
            "reported_s": {"median": round(statistics.median(reported), 3), "max": round(max(reported), 3)},
            "postgresql": subprocess.run([f"{pg_bin()}/postgres", "--version"], capture_output=True,
                                         text=True).stdout.strip(),
        }
        print(json.dumps(result, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
        return 0
    finally:
        if not args.keep:
            subprocess.run([f"{pg_bin()}/pg_ctl", "-D", os.path.join(workdir, "data"), "-m", "fast", "stop"],
                           capture_output=True)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
