"""The archive step: months older than the live window leave the live tables.

A month whose whole range is older than `archive_after_days` (90 by default) moves from the live
table to its `<table>_archive` twin by DETACH + ATTACH: no row is copied, no dead tuple is left,
and the month stays queryable through the archive table. Each month goes through steps that are
each safe to repeat after an interruption:

1. record: its row count and checksum go to hub_archived_partitions (state 'live'), read while
   the partition is still attached (a plain read; the application is not blocked);
2. prepare: a validated CHECK on the month's bounds, so that ATTACH need not scan the rows;
3. move: DETACH from the live table, ATTACH to the archive, state 'archived', in one
   transaction under lock_timeout: catalog changes only (milliseconds of exclusive lock), all
   of it or none of it. A lock_timeout is retried after a pause (db.retry_on_lock_timeout);
4. read back: count and checksum of the month, now in the archive where nothing writes, kept
   in the ledger with verified_at. A row written late between 1 and 3 is in the partition and
   so in these figures. A run killed between 3 and 4 leaves verified_at NULL; the next run
   reads the month back first.

A rerun finds a month either still attached (it starts again at 1) or in the archive (at most
step 4 is left to do). The live tables have a default partition, which forbids DETACH ... CONCURRENTLY
(docs/decisions.md); the plain DETACH holds its lock for the catalog change only.

Late rows: a row that arrives for a month already archived lands in the live table's default
partition. This step moves such rows into the month's archive partition (one transaction:
DELETE ... RETURNING feeding an INSERT) and adds their count and checksum to the month's record.

Read-only: only the archive parents' privileges count for queries through them, so each
archived partition also loses every write privilege (INSERT, UPDATE, DELETE, TRUNCATE) of every
role but its owner, in the move's own transaction; each run also takes them from any archived
partition that still has them (archived before this rule, or granted again by hand). The
application cannot edit a month once archived, by the parent's name or the partition's.

The checksum is the sum of the first 60 bits of md5(ROW(columns)::text) over the month's rows:
independent of row order, so it needs no sort, and additive, so late rows extend it. The
columns are the partition's when the month is first counted, kept in the ledger
(checksum_columns, migration 0010); every later count of the month (the read-back, late rows,
cold export and restore, the drill) hashes the same columns, so a column added to the table
afterwards changes none of them.
"""

from __future__ import annotations

import datetime as _dt

from hubctl import db
from hubctl.dates import add_months, month_label
from hubctl.jobs import Job, JobAbort
from hubctl.partitions import LiveTable, managed_tables, read_partitions

LEDGER = "public.hub_archived_partitions"


def cutoff(today: _dt.date, after_days: int) -> _dt.date:
    """A month is archived once its end (the 1st of the next month) is on or before this day."""
    return today - _dt.timedelta(days=after_days)


def months_to_archive(live_months, today: _dt.date, after_days: int) -> list:
    """The live months whose whole range is older than after_days, oldest first."""
    limit = cutoff(today, after_days)
    return sorted(m for m in live_months if add_months(m, 1) <= limit)


def _ident(sql, schema, name):
    return sql.Identifier(schema, name)


def checksum_expr(sql, alias: str, columns):
    """The ledger's checksum over the rows of `alias`, each row hashed as ROW(columns)::text
    (for a table's full column list, the same text as the whole row)."""
    if not columns:
        raise ValueError("a checksum needs at least one column")
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns))
    return sql.SQL("coalesce(sum(('x' || substr(md5({row}::text), 1, 15))::bit(60)::bigint), 0)"
                   ).format(row=row)


def table_columns(cur, schema: str, name: str) -> list:
    """[(name, type, not null)] of a table's columns, in their order (dropped ones left out)."""
    cur.execute("""
        SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum""", (db.qualified(schema, name),))
    return [tuple(r) for r in cur.fetchall()]


def column_names(cur, schema: str, name: str) -> list:
    """A table's column names, in their order."""
    return [c[0] for c in table_columns(cur, schema, name)]


def missing_columns(checksum_columns, present) -> list:
    """The checksum's columns a relation no longer has (a column dropped or renamed)."""
    have = set(present)
    return [c for c in checksum_columns if c not in have]


def _count_and_checksum(cur, sql, relation, control, first, end, columns):
    cur.execute(sql.SQL("""
        SELECT count(*), {checksum}
        FROM ONLY {rel} AS t WHERE {col} >= %s AND {col} < %s""").format(
        checksum=checksum_expr(sql, "t", columns), rel=relation, col=sql.Identifier(control)),
        (first, end))
    count, checksum = cur.fetchone()
    return int(count), str(checksum)


def ledger_columns(cur, sql, table: str, month) -> list:
    """The columns the ledger's checksum of a month covers."""
    cur.execute(sql.SQL("SELECT checksum_columns FROM {ledger} WHERE parent_table = %s "
                        "AND month = %s").format(ledger=sql.Identifier(*LEDGER.split("."))),
                (table, month))
    row = cur.fetchone()
    if row is None or not row[0]:
        raise JobAbort(f"hub_archived_partitions has no checksum columns for {table} {month}: "
                       "apply the schema migrations (0010)")
    return list(row[0])


def run(job: Job) -> None:
    """Every live table: archive its old months, then move late rows of archived months."""
    conn = job.conn
    tables = managed_tables(job)[3]
    after_days = job.cfg.jobs.archive_after_days
    for t in tables:
        with db.transaction(conn) as cur:
            parts = read_partitions(cur, t.schema, t.name)
            if read_partitions(cur, t.schema, t.name + "_archive") is None:
                raise JobAbort(f"{t.name}_archive does not exist: apply the schema migrations")
        verify_pending(job, t)
        for month in months_to_archive(parts.months, job.today, after_days):
            archive_month(job, t, month, parts.months[month])
        protect_archived(job, t)
        move_late_rows(job, t, parts.default)


# Write privileges an archived partition keeps for no role but its owner.
WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")

_WRITERS = """
    SELECT c.relname,
           array_agg(DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE r.rolname END)
    FROM pg_catalog.pg_inherits i
    JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    CROSS JOIN LATERAL aclexplode(c.relacl) AS a
    LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
    WHERE i.inhparent = to_regclass(%s) AND a.grantee <> c.relowner
      AND a.privilege_type = ANY(%s)
    GROUP BY c.relname ORDER BY c.relname"""


def _revoke_writes(cur, sql, part, grantees) -> None:
    roles = sql.SQL(", ").join(sql.SQL("PUBLIC") if g == "PUBLIC" else sql.Identifier(g)
                               for g in grantees)
    cur.execute(sql.SQL("REVOKE {privs} ON {part} FROM {roles}").format(
        privs=sql.SQL(", ".join(WRITE_PRIVILEGES)), part=part, roles=roles))


def writers_of(cur, schema: str, parent: str) -> list:
    """[(partition, [roles])]: the partitions of parent some role but the owner may write."""
    cur.execute(_WRITERS, (f'"{schema}"."{parent}"', list(WRITE_PRIVILEGES)))
    return [(r[0], sorted(r[1])) for r in cur.fetchall()]


def protect_archived(job: Job, t: LiveTable) -> None:
    """Take the write privileges from every archived partition that still has them."""
    from psycopg2 import sql
    with db.transaction(job.conn) as cur:
        writable = writers_of(cur, t.schema, t.name + "_archive")
    for partition, grantees in writable:
        with job.step("archive_protect", table=t.name, partition=partition,
                      revoke_from=",".join(grantees)) as st:
            if job.dry_run:
                st.set(would="revoke " + ",".join(WRITE_PRIVILEGES))
                continue
            with db.transaction(job.conn) as cur:
                _revoke_writes(cur, sql, _ident(sql, t.schema, partition), grantees)
            st.set(revoked=",".join(WRITE_PRIVILEGES))


def archive_month(job: Job, t: LiveTable, month: _dt.date, partition: str,
                  pauses=db.LOCK_RETRY_PAUSES) -> None:
    """Move one month; a lock_timeout (the application busy on the table) is retried from the
    start of the month's steps, each of which is safe to repeat."""
    with job.step("archive", table=t.name, month=month_label(month), partition=partition) as st:
        db.retry_on_lock_timeout(st, lambda: _archive_month_once(job, st, t, month, partition),
                                 pauses)


def _archive_month_once(job: Job, st, t: LiveTable, month: _dt.date, partition: str) -> None:
    from psycopg2 import sql
    conn = job.conn
    end = add_months(month, 1)
    part = _ident(sql, t.schema, partition)
    check = f"{partition}_archive_bounds"
    with db.transaction(conn) as cur:
        # The month's shape now: the columns every later count of this month hashes.
        columns = column_names(cur, t.schema, partition)
        count, checksum = _count_and_checksum(cur, sql, part, t.control, month, end, columns)
    st.set(checksum=checksum)
    st.rows = count
    if job.dry_run:
        st.set(would="move to " + t.name + "_archive")
        return
    with db.transaction(conn) as cur:
        cur.execute(sql.SQL("""
            INSERT INTO {ledger} (parent_table, month, partition_name, row_count, checksum,
                                  checksum_columns, state)
            VALUES (%s, %s, %s, %s, %s, %s, 'live')
            ON CONFLICT (parent_table, month) DO UPDATE
            SET partition_name = EXCLUDED.partition_name, row_count = EXCLUDED.row_count,
                checksum = EXCLUDED.checksum, checksum_columns = EXCLUDED.checksum_columns,
                recorded_at = now()
            WHERE {ledger}.state = 'live'""").format(
            ledger=sql.Identifier(*LEDGER.split("."))),
            (t.name, month, partition, count, checksum, columns))
    with db.transaction(conn) as cur:
        cur.execute("SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(%s) "
                    "AND conname = %s AND convalidated",
                    (f'"{t.schema}"."{partition}"', check))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("ALTER TABLE {part} DROP CONSTRAINT IF EXISTS {chk}").format(
                part=part, chk=sql.Identifier(check)))
            cur.execute(sql.SQL(
                "ALTER TABLE {part} ADD CONSTRAINT {chk} CHECK ({col} >= %s AND {col} < %s) "
                "NOT VALID").format(part=part, chk=sql.Identifier(check),
                                    col=sql.Identifier(t.control)), (month, end))
    with db.transaction(conn) as cur:
        # VALIDATE takes SHARE UPDATE EXCLUSIVE: inserts go on while it reads the month.
        cur.execute(sql.SQL("ALTER TABLE {part} VALIDATE CONSTRAINT {chk}").format(
            part=part, chk=sql.Identifier(check)))
    with db.transaction(conn) as cur:
        # The move: catalog changes only, so the live table's exclusive lock lasts milliseconds.
        cur.execute(sql.SQL("ALTER TABLE {live} DETACH PARTITION {part}").format(
            live=_ident(sql, t.schema, t.name), part=part))
        cur.execute(sql.SQL(
            "ALTER TABLE {arch} ATTACH PARTITION {part} FOR VALUES FROM (%s) TO (%s)").format(
            arch=_ident(sql, t.schema, t.name + "_archive"), part=part), (month, end))
        grantees = dict(writers_of(cur, t.schema, t.name + "_archive")).get(partition)
        if grantees:
            _revoke_writes(cur, sql, part, grantees)
            st.set(read_only_for=",".join(grantees))
        cur.execute(sql.SQL("UPDATE {ledger} SET state = 'archived', verified_at = NULL, "
                            "recorded_at = now() WHERE parent_table = %s AND month = %s").format(
            ledger=sql.Identifier(*LEDGER.split("."))), (t.name, month))
    st.set(moved_to=t.name + "_archive")
    verify_moved(job, st, t, month, partition)


def verify_moved(job: Job, st, t: LiveTable, month: _dt.date, partition: str) -> None:
    """Read a moved month back from the archive and keep its exact count and checksum.

    Nothing writes to an archive partition, so this read is exact and blocks no one. A row
    written late between the first read and the move (an insert or an update of that month)
    makes the figures differ from the first read; the ledger keeps the read-back figures."""
    from psycopg2 import sql
    part = _ident(sql, t.schema, partition)
    with db.transaction(job.conn) as cur:
        columns = ledger_columns(cur, sql, t.name, month)
        gone = missing_columns(columns, column_names(cur, t.schema, partition))
        if gone:
            raise JobAbort(f"{partition} no longer has {', '.join(gone)}, which its ledger "
                           "checksum covers: a migration dropped or renamed a column of an "
                           "archived month (docs/schema.md)")
        count, checksum = _count_and_checksum(cur, sql, part, t.control, month,
                                              add_months(month, 1), columns)
        cur.execute(sql.SQL("UPDATE {ledger} SET row_count = %s, checksum = %s, "
                            "verified_at = now() WHERE parent_table = %s AND month = %s").format(
            ledger=sql.Identifier(*LEDGER.split("."))), (count, checksum, t.name, month))
    if st.rows is not None and count != st.rows:
        st.set(changed_before_move=count - st.rows)
    st.rows = count
    st.set(checksum=checksum, verified=True)


def verify_pending(job: Job, t: LiveTable) -> None:
    """Months a killed run moved but did not read back: read them back now."""
    from psycopg2 import sql
    with db.transaction(job.conn) as cur:
        cur.execute(sql.SQL("SELECT month, partition_name FROM {ledger} WHERE parent_table = %s "
                            "AND state = 'archived' AND verified_at IS NULL ORDER BY month").format(
            ledger=sql.Identifier(*LEDGER.split("."))), (t.name,))
        pending = cur.fetchall()
    for month, partition in pending:
        with job.step("archive_verify", table=t.name, month=month_label(month),
                      partition=partition) as st:
            if job.dry_run:
                st.set(would="read back count and checksum")
                continue
            verify_moved(job, st, t, month, partition)


def move_late_rows(job: Job, t: LiveTable, default: str | None) -> None:
    """Rows in the live default partition for a month that is already archived."""
    from psycopg2 import sql
    if default is None:
        return
    conn = job.conn
    ledger = sql.Identifier(*LEDGER.split("."))
    with db.transaction(conn) as cur:
        cur.execute(sql.SQL("SELECT month FROM {ledger} WHERE parent_table = %s "
                            "AND state = 'archived' ORDER BY month").format(ledger=ledger),
                    (t.name,))
        archived = [r[0] for r in cur.fetchall()]
    for month in archived:
        end = add_months(month, 1)
        dflt = _ident(sql, t.schema, default)
        with db.transaction(conn) as cur:
            cur.execute(sql.SQL("SELECT count(*) FROM ONLY {d} WHERE {col} >= %s AND {col} < %s")
                        .format(d=dflt, col=sql.Identifier(t.control)), (month, end))
            waiting = cur.fetchone()[0]
        if not waiting:
            continue
        with job.step("late_rows", table=t.name, month=month_label(month)) as st:
            if job.dry_run:
                st.rows = int(waiting)
                st.set(would="move to " + t.name + "_archive")
                continue
            with db.transaction(conn) as cur:
                covered = ledger_columns(cur, sql, t.name, month)
                live_columns = column_names(cur, t.schema, default)
                gone = (missing_columns(live_columns, column_names(cur, t.schema,
                                                                   t.name + "_archive"))
                        or missing_columns(covered, live_columns))
                if gone:
                    raise JobAbort(f"{t.name} and {t.name}_archive differ in "
                                   f"{', '.join(gone)}: a migration must change a live table "
                                   "and its archive twin alike (0002); nothing moved")
                cols = sql.SQL(", ").join(sql.Identifier(c) for c in live_columns)
                cur.execute(sql.SQL("""
                    WITH moved AS (
                        DELETE FROM ONLY {d} WHERE {col} >= %s AND {col} < %s RETURNING *
                    ), stored AS (
                        INSERT INTO {arch} ({cols}) SELECT {cols} FROM moved RETURNING 1
                    )
                    SELECT (SELECT count(*) FROM stored), count(*), {checksum}
                    FROM moved""").format(
                    d=dflt, col=sql.Identifier(t.control), cols=cols,
                    checksum=checksum_expr(sql, "moved", covered),
                    arch=_ident(sql, t.schema, t.name + "_archive")), (month, end))
                stored, count, checksum = cur.fetchone()
                if stored != count:
                    raise JobAbort(f"late rows of {month_label(month)}: {count} taken, "
                                   f"{stored} stored; rolled back")
                cur.execute(sql.SQL("""
                    UPDATE {ledger} SET row_count = row_count + %s,
                        checksum = (checksum::numeric + %s)::text, recorded_at = now()
                    WHERE parent_table = %s AND month = %s""").format(ledger=ledger),
                    (count, checksum, t.name, month))
            st.rows = int(count)
