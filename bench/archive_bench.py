#!/usr/bin/env python3
"""Archive one month of allocations two ways, on the same data, and measure both.

  seed:  the seed's sketch: INSERT INTO archive SELECT ... ; DELETE ... ; ANALYZE
  hub:   this project's way (hubctl archive): count + checksum, validated bound CHECK, then
         DETACH from the live table and ATTACH to the archive in one transaction

For each: wall time, WAL written (pg_current_wal_lsn before/after), dead tuples left in the live
table, and the archive's size on disk. Then the sizes of the archived month: the seed's archive
table with its `toast_compression = 'lz4'` (PostgreSQL rejects that option; its intent, lz4 on
every compressible column, is applied and the table rewritten), the hub's archive partition, and
the cold file that hubctl's own export code (`hubctl cold export`) writes from it. Runs in a
scratch database it creates and drops.

    sudo -u postgres python3 bench/archive_bench.py --rows 3000000

Needs Debian's python3-psycopg2 and a local superuser connection (peer auth as postgres).
"""

import argparse
import json
import os
import sys
import time

import psycopg2
import psycopg2.sql

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
INSERT INTO {table} (allocation_key, allocated_at, finished_at, work_date, execution_time_ms, proxy_id,
                     status, client_id, keyword)
SELECT gen_random_uuid(), at, CASE WHEN st <> 'allocated' THEN at + ms * interval '1 ms' END, d,
       CASE WHEN st = 'completed' THEN ms END, 1 + (random() * 499)::int, st,
       'client-' || (random() * 1000)::int, 'keyword-' || (random() * 30000)::int
FROM generate_series(1, %s) i,
     LATERAL (SELECT %s::date + (i %% %s) AS d,
                     (ARRAY['completed', 'completed', 'completed', 'expired', 'allocated'])[1 + (i %% 5)] AS st,
                     (random() * 5000)::int AS ms) v,
     LATERAL (SELECT d + random() * interval '1 day' AS at) a
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


def sizes(conn, cur, args):
    """The archived month's size three ways: the seed's archive with its lz4 TOAST setting, the
    hub's archive partition, and the cold file `hubctl cold export` writes from it."""
    out = {}
    # The seed's statement, as written (autocommit): PostgreSQL has no such table option.
    try:
        cur.execute("ALTER TABLE seed_archive SET (toast_compression = 'lz4')")
        out["seed_toast_option"] = "accepted"
    except psycopg2.Error as exc:
        out["seed_toast_option"] = " ".join(str(exc).split())
    # Its intent in valid syntax: lz4 for every compressible column, then a rewrite.
    cur.execute("SELECT pg_relation_size('seed_archive'), pg_total_relation_size('seed_archive')")
    heap_before, total_before = cur.fetchone()
    cur.execute("ALTER TABLE seed_archive ALTER COLUMN status SET COMPRESSION lz4, "
                "ALTER COLUMN client_id SET COMPRESSION lz4, ALTER COLUMN keyword SET COMPRESSION lz4")
    cur.execute("VACUUM FULL seed_archive")
    cur.execute("SELECT pg_relation_size('seed_archive'), pg_total_relation_size('seed_archive'), "
                "(SELECT count(*) FROM seed_archive WHERE pg_column_compression(keyword) IS NOT NULL "
                " OR pg_column_compression(client_id) IS NOT NULL OR pg_column_compression(status) IS NOT NULL), "
                "(SELECT avg(pg_column_size(t.*))::int FROM seed_archive t)")
    heap_lz4, total_lz4, compressed_values, avg_row = cur.fetchone()
    out["seed_archive"] = {"heap_bytes_before": heap_before, "total_bytes_before": total_before,
                           "heap_bytes_lz4_rewritten": heap_lz4, "total_bytes_lz4_rewritten": total_lz4,
                           "values_compressed": compressed_values, "average_row_bytes": avg_row}
    # The hub's archive partition and its cold file, written by hubctl's own export code.
    sys.path.insert(0, args.hubctl_path)
    from hubctl import cold  # the installed hubctl, not a copy
    cur.execute("SELECT pg_relation_size('hub_live_2025_08'), pg_total_relation_size('hub_live_2025_08')")
    heap, total = cur.fetchone()
    cur.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'hub_live_2025_08'::regclass "
                "AND attnum > 0 AND NOT attisdropped ORDER BY attnum")
    columns = [r[0] for r in cur.fetchall()]
    path = os.path.join(args.cold_dir, "bench_2025_08.copy.zst")
    if os.path.exists(path):
        os.unlink(path)
    os.makedirs(args.cold_dir, exist_ok=True)
    conn.autocommit = False
    t0 = time.monotonic()
    cold.write_file(conn, cold.zstd_command(), psycopg2.sql.Identifier("hub_live_2025_08"), columns, path)
    seconds = time.monotonic() - t0
    conn.autocommit = True
    size = os.path.getsize(path)
    os.unlink(path)
    out["hub_archive"] = {"heap_bytes": heap, "total_bytes": total}
    out["cold_file"] = {"bytes": size, "zstd_level": cold.ZSTD_LEVEL, "export_seconds": round(seconds, 1),
                        "heap_over_file": round(heap / size, 1), "total_over_file": round(total / size, 1),
                        "seed_lz4_total_over_file": round(total_lz4 / size, 1)}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3_000_000, help="rows in the archived month")
    ap.add_argument("--recent-rows", type=int, default=300_000, help="rows in the live month")
    ap.add_argument("--db", default="bench_archive")
    ap.add_argument("--hubctl-path", default="/usr/local/lib/hubctl",
                    help="where hubctl is installed (its cold export code writes the cold file)")
    ap.add_argument("--cold-dir", default="/var/tmp/hub-bench-cold", help="scratch directory for the cold file")
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
    # WAL is measured server-wide: an autovacuum of seed_live (3 million dead rows after the
    # seed's DELETE) running during the hub's measurement would be counted against it.
    for table in ("seed_live", "seed_archive", "hub_live_2025_08", "hub_live_2025_11", "hub_live_default"):
        cur.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
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
    results["sizes"] = sizes(conn, cur, args)
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
