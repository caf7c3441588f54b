"""`hubctl partitions`: make sure every live table has its monthly partitions.

For each table registered in partman.part_config (the four live tables):

1. plan: the months from month(today) - 3 to month(today) + max(4, premake) that have no
   partition, leaving out months already archived (attached to <table>_archive, or 'archived'
   / 'cold' in hub_archived_partitions: a live partition for such a month could never be
   archived) and months for which the default partition holds rows (making them would fail
   with "updated partition constraint for default partition would be violated"; reported);
2. create them with partman.create_partition_time() (partman itself only knows the server's
   clock, not --today), then partman.run_maintenance(p_parent_table, p_analyze => false),
   each in its own transaction, as hub_owner with lock_timeout;
3. count the rows in the default partition: any there are reported (attention, exit 3), not
   moved.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re

from hubctl import db
from hubctl.dates import add_months, month_label, month_start, months
from hubctl.jobs import ATTENTION, DRY_RUN, Job, JobAbort

MIN_AHEAD = 4        # months after the current one that must always exist
BACK_MONTHS = 3      # months before the current one whose missing partitions are made

_BOUND_RE = re.compile(r"^FOR VALUES FROM \('([0-9]{4}-[0-9]{2}-[0-9]{2})[^']*'\) "
                       r"TO \('([0-9]{4}-[0-9]{2}-[0-9]{2})[^']*'\)$")


@dataclasses.dataclass(frozen=True)
class LiveTable:
    parent: str          # 'public.v1_hub_work_allocations', as in part_config
    schema: str
    name: str
    control: str
    premake: int


@dataclasses.dataclass
class Partitions:
    months: dict          # first day of month -> partition name
    default: str | None   # name of the default partition
    other: list           # partitions that are not one calendar month (names)


@dataclasses.dataclass(frozen=True)
class Plan:
    wanted: list          # months that should exist
    missing: list         # wanted, absent, not archived
    archived: list        # wanted, absent, archived (left alone)


def parse_bound(expr: str):
    """'DEFAULT' -> 'default'; "FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')" ->
    (date(2026,7,1), date(2026,8,1)); anything else -> None."""
    if expr is None:
        return None
    expr = expr.strip()
    if expr == "DEFAULT":
        return "default"
    m = _BOUND_RE.match(expr)
    if not m:
        return None
    try:
        return (_dt.date.fromisoformat(m.group(1)), _dt.date.fromisoformat(m.group(2)))
    except ValueError:
        return None


def classify_partitions(rows) -> Partitions:
    """rows: (name, bound expression). Monthly = FROM the 1st TO the 1st of the next month."""
    parts = Partitions(months={}, default=None, other=[])
    for name, expr in rows:
        b = parse_bound(expr)
        if b == "default":
            parts.default = name
        elif b and b[0].day == 1 and b[1] == add_months(b[0], 1):
            parts.months[b[0]] = name
        else:
            parts.other.append(name)
    return parts


def window(today: _dt.date, premake: int = MIN_AHEAD) -> tuple[_dt.date, _dt.date]:
    """(first, last) month that must have a partition for this today."""
    return add_months(today, -BACK_MONTHS), add_months(today, max(MIN_AHEAD, premake))


def plan_months(today: _dt.date, premake: int, existing, archived) -> Plan:
    first, last = window(today, premake)
    wanted = months(first, last)
    absent = [m for m in wanted if m not in set(existing)]
    arch = set(archived)
    return Plan(wanted=wanted, missing=[m for m in absent if m not in arch],
                archived=[m for m in absent if m in arch])


def months_ahead(today: _dt.date, existing) -> int:
    """How many consecutive months after the current one have a partition."""
    have = set(existing)
    n = 0
    while add_months(today, n + 1) in have:
        n += 1
    return n


# --------------------------------------------------------------------------- catalog reads

def live_tables(cur, partman_schema: str) -> list[LiveTable]:
    from psycopg2 import sql
    cur.execute(sql.SQL("""
        SELECT parent_table, control, premake,
               partition_interval::interval = interval '1 month' AS monthly
        FROM {}.part_config ORDER BY parent_table""").format(sql.Identifier(partman_schema)))
    tables = []
    for parent, control, premake, monthly in cur.fetchall():
        if not monthly:
            raise JobAbort(f"{parent} is not partitioned by month in partman.part_config; "
                           "hubctl only maintains monthly partition sets")
        schema, _, name = parent.partition(".")
        tables.append(LiveTable(parent, schema, name, control, int(premake or MIN_AHEAD)))
    return tables


def read_partitions(cur, schema: str, name: str) -> Partitions | None:
    """The partitions of schema.name, or None if the table does not exist."""
    cur.execute("SELECT to_regclass(%s)", (db.qualified(schema, name),))
    if cur.fetchone()[0] is None:
        return None
    cur.execute("""
        SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
        FROM pg_catalog.pg_inherits i
        JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = to_regclass(%s)""", (db.qualified(schema, name),))
    return classify_partitions(cur.fetchall())


def archived_months(cur, table: LiveTable) -> set:
    """Months of this table that left it: attached to <table>_archive, or archived/cold in
    the archive ledger (hub_archived_partitions names tables with or without schema)."""
    found = set()
    arch = read_partitions(cur, table.schema, table.name + "_archive")
    if arch is not None:
        found.update(arch.months)
    cur.execute("SELECT to_regclass('public.hub_archived_partitions')")
    if cur.fetchone()[0] is not None:
        cur.execute("""
            SELECT month FROM public.hub_archived_partitions
            WHERE parent_table IN (%s, %s) AND state IN ('archived', 'cold')""",
                    (table.name, table.parent))
        found.update(month_start(r[0]) for r in cur.fetchall())
    return found


def default_rows_by_month(cur, table: LiveTable, default: str | None) -> dict:
    """{first of month: rows} in the default partition (empty if it has none)."""
    if default is None:
        return {}
    from psycopg2 import sql
    cur.execute(sql.SQL("""
        SELECT date_trunc('month', {col})::date, count(*)
        FROM ONLY {tbl} GROUP BY 1""").format(
        col=sql.Identifier(table.control), tbl=sql.Identifier(table.schema, default)))
    return {r[0]: r[1] for r in cur.fetchall()}


# --------------------------------------------------------------------------- the steps

def managed_tables(job: Job) -> tuple[str, int, str, list[LiveTable]]:
    """(partman version, major, partman schema, live tables) of the hub's partition sets."""
    with db.transaction(job.conn) as cur:
        version, major, schema = db.partman_info(cur)
        tables = live_tables(cur, schema)
    if not tables:
        raise JobAbort("partman.part_config lists no tables")
    return version, major, schema, tables


def run(job: Job) -> None:
    """All tables: plan, create, run_maintenance, then the default partitions."""
    version, major, schema, tables = managed_tables(job)
    for t in tables:
        ensure_table(job, t, major, schema, version)
    for t in tables:
        check_default(job, t)


def ensure_table(job: Job, t: LiveTable, major: int, partman_schema: str,
                 version: str, pauses=db.LOCK_RETRY_PAUSES) -> None:
    with job.step("partitions", table=t.name) as st:
        db.retry_on_lock_timeout(
            st, lambda: _ensure_table_once(job, st, t, major, partman_schema, version), pauses)


def _ensure_table_once(job: Job, st, t: LiveTable, major: int, partman_schema: str,
                       version: str) -> None:
    """Plan, create the missing months, run partman's maintenance; safe to repeat."""
    from psycopg2 import sql
    conn = job.conn
    with db.transaction(conn) as cur:
        parts = read_partitions(cur, t.schema, t.name)
        if parts is None:
            raise JobAbort(f"{t.parent} is in partman.part_config but does not exist")
        plan = plan_months(job.today, t.premake, parts.months, archived_months(cur, t))
        in_default = default_rows_by_month(cur, t, parts.default)
        blocked = [m for m in plan.missing if in_default.get(m)]
        create = [m for m in plan.missing if m not in blocked]
        if create and not job.dry_run:
            args = [sql.SQL("p_parent_table => %s"),
                    sql.SQL("p_partition_times => %s::date[]::timestamptz[]")]
            if major == 4:
                args.append(sql.SQL("p_analyze => false"))
            cur.execute(sql.SQL("SELECT {}.create_partition_time({})").format(
                sql.Identifier(partman_schema), sql.SQL(", ").join(args)),
                (t.parent, [m.isoformat() for m in create]))
    if not job.dry_run:
        conn.notices.clear()
        with db.transaction(conn) as cur:
            cur.execute(sql.SQL("SELECT {}.run_maintenance(p_parent_table => %s, "
                                "p_analyze => false, p_jobmon => false)").format(
                sql.Identifier(partman_schema)), (t.parent,))
        notices = [" ".join(n.split()) for n in conn.notices]
        if notices:
            st.set(notices=notices[-3:])
        with db.transaction(conn) as cur:
            after = read_partitions(cur, t.schema, t.name).months
    else:
        after = set(parts.months) | set(create)

    made = sorted(set(after) - set(parts.months))
    st.rows = 0 if job.dry_run else len(made)
    st.set(**{("would_create" if job.dry_run else "created"): len(create if job.dry_run
                                                                     else made)})
    if create or made:
        st.set(months=[month_label(m) for m in (create if job.dry_run else made)])
    if plan.archived:
        st.set(archived=[month_label(m) for m in plan.archived])
    ahead = months_ahead(job.today, after)
    st.set(ahead=ahead, first=month_label(min(after)) if after else None,
           last=month_label(max(after)) if after else None, partman=version)
    if blocked:
        st.set(blocked=[month_label(m) for m in blocked])
        st.need_attention(f"{t.name}: no partition made for "
                          f"{', '.join(month_label(m) for m in blocked)}: the default "
                          "partition holds rows of that month")
    still_missing = [m for m in plan.missing if m not in after and m not in blocked]
    if still_missing and not job.dry_run:
        st.need_attention(f"{t.name}: months still without a partition: "
                          f"{', '.join(month_label(m) for m in still_missing)}")
    if ahead < MIN_AHEAD and not blocked and not job.dry_run:
        st.need_attention(f"{t.name}: only {ahead} months ahead of {job.today} "
                          f"(want {MIN_AHEAD})")
    if job.dry_run:
        st.set(maintenance="skipped")
        if st.outcome != ATTENTION:
            st.outcome = DRY_RUN


def check_default(job: Job, t: LiveTable) -> None:
    """Count the rows in the table's default partition; rows there need an operator."""
    from psycopg2 import sql
    conn = job.conn
    with job.step("default_rows", table=t.name) as st:
        with db.transaction(conn) as cur:
            parts = read_partitions(cur, t.schema, t.name)
            if parts is None or parts.default is None:
                st.need_attention(f"{t.name} has no default partition")
                return
            cur.execute(sql.SQL("SELECT count(*), min({col}), max({col}) FROM ONLY {tbl}").format(
                col=sql.Identifier(t.control), tbl=sql.Identifier(t.schema, parts.default)))
            count, low, high = cur.fetchone()
        st.set(partition=parts.default, default_rows=count)
        if count:
            st.set(min=low, max=high)
            st.need_attention(f"{parts.default} holds {count} rows ({t.control} {low} .. "
                              f"{high}); they are not moved automatically")
