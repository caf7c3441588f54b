"""`hubctl stats`: the idempotent daily rollup of v1_hub_work_allocations.

One row per day in v1_hub_daily_stats, written with INSERT ... ON CONFLICT (stat_date) DO
UPDATE, one transaction and one log line per day. The day's rows are read from the live
table and from v1_hub_work_allocations_archive (UNION ALL; a month is in exactly one of
them), so a rerun for an archived month still works. A day without rows gets a row of zeros
with a NULL average. created_at is set again on each rewrite: it says when the numbers were
computed.

The daily job rolls up yesterday and every day missing before it (catch_up_days): a day whose
run was refused as busy, or a host down for a day, is filled in on the next run, not left as a
hole that becomes permanent once its month goes cold. The look-back is bounded (31 days, well
inside the 90 days months stay live) and starts no earlier than the first day ever rolled up,
so a new server does not write zeros for the days before it existed; an older hole is filled
with `hubctl stats --from D --to D`.

A day of a month that is in a cold file (hub_archived_partitions state 'cold') is not in the
database any more: its stats row is kept as it is and the step fails for that day, rather than
writing zeros over figures that can no longer be recomputed (`hubctl cold restore` brings the
rows back for a look, into hub_restored).
"""

from __future__ import annotations

import datetime as _dt

from hubctl import db
from hubctl.jobs import DRY_RUN, Job, JobAbort

_COLD_MONTH = """
    SELECT 1 FROM public.hub_archived_partitions
    WHERE parent_table = 'v1_hub_work_allocations' AND state = 'cold'
      AND month = date_trunc('month', %(day)s::date)::date
"""

_DAY_ROWS = """
    SELECT status, execution_time_ms, client_id, keyword
    FROM public.v1_hub_work_allocations WHERE work_date = %(day)s
    UNION ALL
    SELECT status, execution_time_ms, client_id, keyword
    FROM public.v1_hub_work_allocations_archive WHERE work_date = %(day)s
"""

_AGGREGATE = f"""
    SELECT %(day)s::date                                                     AS stat_date,
           count(*)                                                          AS total_allocations,
           count(*) FILTER (WHERE status = 'completed')                      AS completed_count,
           count(*) FILTER (WHERE status = 'expired')                        AS expired_count,
           round(avg(execution_time_ms) FILTER (WHERE status = 'completed'))::integer
                                                                             AS avg_execution_time_ms,
           count(DISTINCT client_id)::integer                                AS unique_clients,
           count(DISTINCT keyword)::integer                                  AS unique_keywords
    FROM ({_DAY_ROWS}) AS a
"""

_COLUMNS = ("total_allocations", "completed_count", "expired_count", "avg_execution_time_ms",
            "unique_clients", "unique_keywords")

UPSERT = f"""
    INSERT INTO public.v1_hub_daily_stats AS s
        (stat_date, {", ".join(_COLUMNS)})
    {_AGGREGATE}
    ON CONFLICT (stat_date) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS)},
        created_at = DEFAULT
    RETURNING {", ".join(_COLUMNS)}
"""

PREVIEW = f"SELECT {', '.join(_COLUMNS)} FROM ({_AGGREGATE}) AS p"

# Short names for the log line, in column order.
_LOG_NAMES = ("total", "completed", "expired", "avg_ms", "clients", "keywords")


def rollup(job: Job, days: list[_dt.date]) -> None:
    """One step (and one transaction) per day; a cold day fails its own step only."""
    conn = job.conn
    cold = []
    for day in days:
        try:
            _rollup_day(job, conn, day)
        except JobAbort:
            cold.append(day)
    if cold:
        raise JobAbort(f"{len(cold)} day(s) in cold months not rolled up ({cold[0]} .. "
                       f"{cold[-1]}); their stats rows are kept as they were")


def _rollup_day(job: Job, conn, day: _dt.date) -> None:
    with job.step("stats", date=day) as st:
        with db.transaction(conn) as cur:
            cur.execute(_COLD_MONTH, {"day": day})
            if cur.fetchone() is not None:
                raise JobAbort(f"{day:%Y-%m} is in a cold file, not in the database: its "
                               "stats row is kept as it was")
            cur.execute(PREVIEW if job.dry_run else UPSERT, {"day": day})
            values = cur.fetchone()
        st.set(**dict(zip(_LOG_NAMES, values)))
        if job.dry_run:
            st.rows = 0
            st.outcome = DRY_RUN
        else:
            st.rows = 1


# How far back the daily job looks for days without a stats row.
CATCH_UP_DAYS = 31


def catch_up_days(today: _dt.date, rolled: set, first_rolled: _dt.date | None,
                  bound: int = CATCH_UP_DAYS) -> list:
    """Yesterday, after the days missing from `rolled` in the `bound` days before it that are
    not older than the first day ever rolled up (None: nothing rolled up yet); oldest first."""
    yesterday = today - _dt.timedelta(days=1)
    if first_rolled is None:
        return [yesterday]
    start = max(first_rolled, yesterday - _dt.timedelta(days=bound))
    missing = [start + _dt.timedelta(days=k) for k in range((yesterday - start).days)]
    return [d for d in missing if d not in rolled] + [yesterday]


def yesterday(job: Job) -> None:
    """The daily job's step: yesterday, and the days missed before it (catch_up_days)."""
    day_before = job.today - _dt.timedelta(days=1)
    with db.transaction(job.conn) as cur:
        cur.execute("SELECT min(stat_date) FROM public.v1_hub_daily_stats")
        first = cur.fetchone()[0]
        cur.execute("SELECT stat_date FROM public.v1_hub_daily_stats "
                    "WHERE stat_date >= %s AND stat_date < %s",
                    (day_before - _dt.timedelta(days=CATCH_UP_DAYS), day_before))
        rolled = {r[0] for r in cur.fetchall()}
    rollup(job, catch_up_days(job.today, rolled, first))
