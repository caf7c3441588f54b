#!/usr/bin/env python3
"""Archive one month of allocations two ways, on the same data, and measure both.

  seed:  the seed's sketch: INSERT INTO archive SELECT ... ; DELETE ... ; ANALYZE
  hub:   this project's way (hubctl archive): count + checksum, validated bound CHECK, then
         DETACH from the live table and ATTACH to the archive in one transaction

For each: wall time, WAL written (pg_current_wal_lsn before/after), dead tuples left in the live
table, and the archive's size on disk. Runs in a scratch database it creates and drops.

    sudo -u postgres python3 bench/archive_bench.py --rows 3000000

Needs Debian's python3-psycopg2 and a local superuser connection (peer auth as postgres).
"""

import argparse
import json
import time

import psycopg2

SCHEMA = """
CREATE TABLE {name} (
    allocation_key uuid NOT NULL DEFAULT gen_random_uuid(),
    allocated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    work_date date NOT NULL,
    execution_time_ms integer,
    proxy_id smallint,
    status text NOT NULL,
    client_id text NOT NULL,
    keyword text NOT NULL,
    PRIMARY KEY (allocation_key, work_date)
) {partitioning};
CREATE INDEX ON {name} (allocation_key, work_date) WHERE status = 'allocated';
CREATE INDEX ON {name} (work_date, status);
"""

FILL = """
INSERT INTO {table} (work_date, finished_at, execution_time_ms, proxy_id, status, client_id, keyword)
SELECT d, now(), (random() * 5000)::int, 1 + (random() * 499)::int,
       (ARRAY['allocated', 'completed', 'expired'])[1 + (i %% 3)],
       'client-' || (i %% 200), 'keyword-' || (i %% 30000)
FROM generate_series(1, %s) i, LATERAL (SELECT %s::date + (i %% %s) AS d) dd
"""


def wal(cur):
    cur.execute("SELECT pg_current_wal_insert_lsn()")
    return cur.fetchone()[0]


def wal_bytes(cur, start):
    cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)::bigint", (start,))
    return cur.fetchone()[0]


def dead_tuples(cur, tables):
    cur.execute("SELECT pg_stat_force_next_flush()")
    cur.execute("SELECT coalesce(sum(n_dead_tup), 0), coalesce(sum(n_live_tup), 0) "
                "FROM pg_stat_user_tables WHERE relname = ANY(%s)", (tables,))
    dead, live = cur.fetchone()
    return int(dead), int(live)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3_000_000, help="rows in the archived month")
    ap.add_argument("--recent-rows", type=int, default=300_000, help="rows in the live month")
    ap.add_argument("--db", default="bench_archive")
    args = ap.parse_args()

    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{args.db}"')
        cur.execute(f'CREATE DATABASE "{args.db}"')
    conn = psycopg2.connect(dbname=args.db)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SHOW server_version")
    version = cur.fetchone()[0]

    print(f"# building: {args.rows} rows in 2025-08 and {args.recent_rows} in 2025-11, twice", flush=True)
    # seed: one plain live table and its archive (the seed's LIKE ... INCLUDING ALL)
    cur.execute(SCHEMA.format(name="seed_live", partitioning=""))
    cur.execute(FILL.format(table="seed_live"), (args.rows, "2025-08-01", 31))
    cur.execute(FILL.format(table="seed_live"), (args.recent_rows, "2025-11-01", 30))
    cur.execute("CREATE TABLE seed_archive (LIKE seed_live INCLUDING ALL) "
                "WITH (autovacuum_enabled = false, fillfactor = 100)")
    # hub: monthly partitions and a partitioned archive
    cur.execute(SCHEMA.format(name="hub_live", partitioning="PARTITION BY RANGE (work_date)"))
    cur.execute(SCHEMA.format(name="hub_archive", partitioning="PARTITION BY RANGE (work_date)"))
    cur.execute("CREATE TABLE hub_live_2025_08 PARTITION OF hub_live FOR VALUES FROM ('2025-08-01') TO ('2025-09-01')")
    cur.execute("CREATE TABLE hub_live_2025_11 PARTITION OF hub_live FOR VALUES FROM ('2025-11-01') TO ('2025-12-01')")
    cur.execute("CREATE TABLE hub_live_default PARTITION OF hub_live DEFAULT")
    cur.execute("INSERT INTO hub_live SELECT * FROM seed_live")
    cur.execute("VACUUM ANALYZE seed_live, hub_live")
    cur.execute("CHECKPOINT")

    results = {"server": version, "rows": args.rows}

    # --- the seed's method
    start, t0 = wal(cur), time.monotonic()
    cur.execute("BEGIN")
    cur.execute("INSERT INTO seed_archive SELECT * FROM seed_live WHERE work_date < '2025-09-01'")
    cur.execute("DELETE FROM seed_live WHERE work_date < '2025-09-01'")
    cur.execute("COMMIT")
    cur.execute("ANALYZE seed_live")
    seconds = time.monotonic() - t0
    dead, live = dead_tuples(cur, ["seed_live"])
    written = wal_bytes(cur, start)
    cur.execute("SELECT pg_total_relation_size('seed_archive')")
    results["seed"] = {"seconds": round(seconds, 3), "wal_bytes": written,
                       "dead_tuples_in_live": dead, "live_tuples": live,
                       "dead_share": round(dead / max(dead + live, 1), 3),
                       "archive_bytes": cur.fetchone()[0]}

    # --- this project's method (the statements hubctl archive runs)
    cur.execute("CHECKPOINT")
    start, t0 = wal(cur), time.monotonic()
    cur.execute("SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0) "
                "FROM ONLY hub_live_2025_08 t")
    cur.execute("ALTER TABLE hub_live_2025_08 ADD CONSTRAINT b CHECK (work_date >= '2025-08-01' "
                "AND work_date < '2025-09-01') NOT VALID")
    cur.execute("ALTER TABLE hub_live_2025_08 VALIDATE CONSTRAINT b")
    prepare = time.monotonic() - t0
    t1 = time.monotonic()
    cur.execute("BEGIN")
    cur.execute("SET LOCAL lock_timeout = '5s'")
    cur.execute("ALTER TABLE hub_live DETACH PARTITION hub_live_2025_08")
    cur.execute("ALTER TABLE hub_archive ATTACH PARTITION hub_live_2025_08 "
                "FOR VALUES FROM ('2025-08-01') TO ('2025-09-01')")
    cur.execute("COMMIT")
    move = time.monotonic() - t1
    seconds = time.monotonic() - t0
    dead, live = dead_tuples(cur, ["hub_live_2025_11", "hub_live_default"])
    written = wal_bytes(cur, start)
    cur.execute("SELECT pg_total_relation_size('hub_live_2025_08')")
    results["hub"] = {"seconds": round(seconds, 3), "move_seconds": round(move, 4),
                      "prepare_seconds": round(prepare, 3), "wal_bytes": written,
                      "dead_tuples_in_live": dead, "live_tuples": live,
                      "archive_bytes": cur.fetchone()[0]}
    seed, hub = results["seed"], results["hub"]
    results["ratios"] = {
        "time_seed_over_hub_move": round(seed["seconds"] / max(hub["move_seconds"], 1e-6)),
        "time_seed_over_hub_total": round(seed["seconds"] / max(hub["seconds"], 1e-6), 1),
        "wal_seed_over_hub": round(seed["wal_bytes"] / max(hub["wal_bytes"], 1)),
    }
    print(json.dumps(results, indent=2, default=int))
    conn.close()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{args.db}"')


if __name__ == "__main__":
    main()
