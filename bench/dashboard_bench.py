#!/usr/bin/env python3
"""One day's dashboard figures, from v1_hub_daily_stats against from the raw rows.

Builds, in a scratch database, 90 days of allocations at the seed's volume (100,000 a day by
default) in monthly partitions with the hub's indexes, rolls them up into a daily stats table
with the same query hubctl's stats step uses, then times the seed's dashboard figures for one
day both ways (median of several runs, server-side time from EXPLAIN ANALYZE).

    sudo -u postgres python3 bench/dashboard_bench.py --per-day 100000 --days 90

Needs Debian's python3-psycopg2 and a local superuser connection (peer auth as postgres).
"""

import argparse
import datetime as dt
import json
import statistics

import psycopg2

RAW = """
SELECT count(*), count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status = 'expired'),
       round(avg(execution_time_ms) FILTER (WHERE status = 'completed')),
       count(DISTINCT client_id), count(DISTINCT keyword)
FROM allocations WHERE work_date = %s
"""
STATS = "SELECT * FROM daily_stats WHERE stat_date = %s"


def server_ms(cur, query, args, runs):
    times = []
    for _ in range(runs):
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query, args)
        plan = cur.fetchone()[0][0]
        times.append(plan["Execution Time"] + plan.get("Planning Time", 0))
    return round(statistics.median(times), 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-day", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--db", default="bench_dashboard")
    args = ap.parse_args()

    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{args.db}"')
        cur.execute(f'CREATE DATABASE "{args.db}"')
    conn = psycopg2.connect(dbname=args.db)
    conn.autocommit = True
    cur = conn.cursor()
    last = dt.date(2025, 11, 30)
    first = last - dt.timedelta(days=args.days - 1)
    print(f"# building {args.per_day * args.days} rows, {first} .. {last}", flush=True)
    cur.execute("""
        CREATE TABLE allocations (
            allocation_key uuid NOT NULL DEFAULT gen_random_uuid(),
            allocated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz,
            work_date date NOT NULL, execution_time_ms integer, proxy_id smallint,
            status text NOT NULL, client_id text NOT NULL, keyword text NOT NULL,
            PRIMARY KEY (allocation_key, work_date)) PARTITION BY RANGE (work_date)""")
    month = first.replace(day=1)
    while month <= last:
        nxt = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        cur.execute(f"CREATE TABLE allocations_{month:%Y_%m} PARTITION OF allocations "
                    "FOR VALUES FROM (%s) TO (%s)", (month, nxt))
        month = nxt
    cur.execute("CREATE INDEX ON allocations (allocation_key, work_date) WHERE status = 'allocated'")
    cur.execute("CREATE INDEX ON allocations (work_date, status)")
    cur.execute("""
        INSERT INTO allocations (work_date, finished_at, execution_time_ms, proxy_id, status, client_id, keyword)
        SELECT d, now(), (random() * 5000)::int, 1 + (random() * 499)::int,
               (ARRAY['allocated', 'completed', 'completed', 'completed', 'expired'])[1 + (i %% 5)],
               'client-' || (i %% 500), 'keyword-' || ((i * 7919) %% 30000)
        FROM generate_series(%s::date, %s::date, '1 day') d, generate_series(1, %s) i""",
                (first, last, args.per_day))
    cur.execute("VACUUM ANALYZE allocations")
    cur.execute("""
        CREATE TABLE daily_stats (stat_date date PRIMARY KEY, total_allocations bigint,
            completed_count bigint, expired_count bigint, avg_execution_time_ms integer,
            unique_clients integer, unique_keywords integer, created_at timestamp DEFAULT now())""")
    cur.execute("""
        INSERT INTO daily_stats (stat_date, total_allocations, completed_count, expired_count,
                                 avg_execution_time_ms, unique_clients, unique_keywords)
        SELECT work_date, count(*), count(*) FILTER (WHERE status = 'completed'),
               count(*) FILTER (WHERE status = 'expired'),
               round(avg(execution_time_ms) FILTER (WHERE status = 'completed')),
               count(DISTINCT client_id), count(DISTINCT keyword)
        FROM allocations GROUP BY work_date""")
    cur.execute("VACUUM ANALYZE daily_stats")
    day = last - dt.timedelta(days=1)
    cur.execute(RAW, (day,))
    raw_row = cur.fetchone()
    cur.execute(STATS, (day,))
    stats_row = cur.fetchone()
    assert list(raw_row) == [stats_row[1], stats_row[2], stats_row[3], stats_row[4], stats_row[5], stats_row[6]], \
        (raw_row, stats_row)
    cur.execute("SELECT server_version FROM (SELECT current_setting('server_version') AS server_version) v")
    result = {
        "server": cur.fetchone()[0], "rows": args.per_day * args.days, "day": day.isoformat(),
        "raw_ms": server_ms(cur, RAW, (day,), args.runs),
        "stats_ms": server_ms(cur, STATS, (day,), args.runs),
    }
    result["ratio"] = round(result["raw_ms"] / max(result["stats_ms"], 0.001))
    print(json.dumps(result, indent=2))
    conn.close()
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE "{args.db}"')


if __name__ == "__main__":
    main()
