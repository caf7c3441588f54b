"""`hubctl status`: what monitoring and an operator want to know, read-only.

No lock is taken and no run is recorded. Per job: the last run (start, end, outcome, rows);
per live table: rows in the default partition and monthly partitions ahead of today; the
latest stats date; whether a hubctl job holds the lock now (from /proc/locks).
"""

from __future__ import annotations

import datetime as _dt
import json

from hubctl import db
from hubctl.config import Config
from hubctl.dates import month_label
from hubctl.jobs import lock_is_held
from hubctl.partitions import live_tables, months_ahead, read_partitions

# Jobs shown even before their first run; archive and cold-export join when they exist.
KNOWN_JOBS = ("daily", "partitions", "stats")


def collect(cfg: Config, today: _dt.date, connect=db.connect) -> dict:
    from psycopg2 import sql
    conn = connect(cfg, "status", readonly=True)
    try:
        with db.transaction(conn) as cur:
            cur.execute("""
                SELECT DISTINCT ON (job) job, id, started_at, finished_at, outcome, rows,
                       detail->>'error', detail->'attention'
                FROM public.hub_job_runs
                ORDER BY job, started_at DESC, id DESC""")
            jobs = {name: None for name in KNOWN_JOBS}
            for job, rid, started, finished, outcome, rows, error, attention in cur.fetchall():
                jobs[job] = {"id": rid, "started_at": started, "finished_at": finished,
                             "outcome": outcome, "rows": rows, "error": error,
                             "attention": attention or [], "last_done": None}
            # A 'busy' or 'running' last run hides the last one that did its work.
            cur.execute("""
                SELECT DISTINCT ON (job) job, id, started_at, finished_at, outcome, rows
                FROM public.hub_job_runs WHERE outcome IN ('ok', 'attention', 'failed')
                ORDER BY job, started_at DESC, id DESC""")
            for job, rid, started, finished, outcome, rows in cur.fetchall():
                if jobs.get(job) and jobs[job]["id"] != rid:
                    jobs[job]["last_done"] = {"id": rid, "started_at": started,
                                              "finished_at": finished, "outcome": outcome,
                                              "rows": rows}
            version, _major, schema = db.partman_info(cur)
            tables = {}
            for t in live_tables(cur, schema):
                parts = read_partitions(cur, t.schema, t.name)
                if parts is None:
                    tables[t.name] = {"error": "table does not exist"}
                    continue
                default_rows = None
                if parts.default is not None:
                    cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(
                        sql.Identifier(t.schema, parts.default)))
                    default_rows = cur.fetchone()[0]
                tables[t.name] = {
                    "default_partition": parts.default,
                    "default_rows": default_rows,
                    "partitions": len(parts.months),
                    "first_month": month_label(min(parts.months)) if parts.months else None,
                    "last_month": month_label(max(parts.months)) if parts.months else None,
                    "months_ahead": months_ahead(today, parts.months),
                }
            cur.execute("SELECT max(stat_date), bool_or(stat_date = %s) "
                        "FROM public.v1_hub_daily_stats", (today - _dt.timedelta(days=1),))
            latest, yesterday_done = cur.fetchone()
    finally:
        conn.close()
    return {"today": today, "partman": version, "jobs": jobs, "tables": tables,
            "stats": {"latest_date": latest,
                      "yesterday_done": bool(yesterday_done)},
            "lock": {"dir": cfg.jobs.lock_dir, "held": lock_is_held(cfg.jobs.lock_dir)}}


def _iso(v):
    if isinstance(v, (_dt.date, _dt.datetime)):
        return v.isoformat()
    return v


def _when(v) -> str:
    if isinstance(v, _dt.datetime):
        return v.isoformat(timespec="seconds")
    return "-" if v is None else str(v)


def to_json(data: dict) -> str:
    return json.dumps(data, default=_iso, indent=2, sort_keys=False)


def to_text(data: dict) -> str:
    out = [f"hubctl status (today {data['today']}, pg_partman {data['partman']})", "jobs:"]
    width = max(len(j) for j in data["jobs"]) if data["jobs"] else 4
    for job, run in data["jobs"].items():
        if run is None:
            out.append(f"  {job:<{width}}  never run")
            continue
        line = (f"  {job:<{width}}  #{run['id']} {_when(run['started_at'])} .. "
                f"{_when(run['finished_at'])}  outcome={run['outcome']} "
                f"rows={'-' if run['rows'] is None else run['rows']}")
        if run["outcome"] == "running" and data["lock"]["held"] is False:
            line += "  (stale: no hubctl job holds the lock; the next run closes it)"
        if run["attention"]:
            line += f"  attention={len(run['attention'])}"
        if run["error"]:
            line += f"  error={run['error'][:200]}"
        out.append(line)
        done = run.get("last_done")
        if done:
            out.append(f"  {'':<{width}}  last done: #{done['id']} {_when(done['started_at'])}"
                       f" .. {_when(done['finished_at'])}  outcome={done['outcome']} "
                       f"rows={'-' if done['rows'] is None else done['rows']}")
    out.append("tables:")
    width = max((len(t) for t in data["tables"]), default=4)
    for name, t in data["tables"].items():
        if "error" in t:
            out.append(f"  {name:<{width}}  {t['error']}")
            continue
        out.append(f"  {name:<{width}}  months_ahead={t['months_ahead']} "
                   f"partitions={t['partitions']} ({t['first_month']}..{t['last_month']}) "
                   f"default_rows={t['default_rows']}")
    s = data["stats"]
    out.append(f"stats: latest_date={_iso(s['latest_date']) or '-'} "
               f"yesterday_done={'yes' if s['yesterday_done'] else 'no'}")
    held = data["lock"]["held"]
    out.append(f"lock: {'unknown' if held is None else ('held' if held else 'free')}")
    return "\n".join(out)
