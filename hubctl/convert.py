"""`hubctl convert PHASE`: turn the seed's plain v1_hub_work_allocations into the project's
monthly-partitioned table while the application keeps writing to it.

playbooks/migrate-partitioned.yml (role hub_convert) runs it. Before `prepare`, that role (as
the postgres user) makes schema hub_convert, gives the legacy table to hub_owner, and applies
migration 0001 there, so the project's four tables exist in hub_convert. Then:

  check     prepare's first step, before the legacy table changes owner: refuses a table that
            cannot be converted (listing every reason) and then leaves nothing behind.
  prepare   checks again that the legacy table's columns fit the new table; makes the new table's
            monthly partitions in public, named as pg_partman names them, plus two catch-all
            partitions (MINVALUE .. first month, after the last month .. MAXVALUE) so that no
            write can fail for lack of a partition; installs a trigger on the legacy table that
            repeats each INSERT, UPDATE and DELETE on the new table in the same transaction;
            copies the existing rows in block ranges (resumable: the last block copied is
            recorded with each batch); then verifies.
  verify    per-day row counts and checksums of both tables, read in one REPEATABLE READ
            snapshot. The mirror writes in the application's own transaction, so in any
            snapshot the two agree exactly, inserts or not.
  swap      verifies, then in one transaction under lock_timeout (retried): locks both tables,
            re-checks the newest rows, renames the legacy table (and its clashing index names)
            to ..._legacy, moves the new tables to public, mirrors writes back to the legacy
            table, records migration 0001. Prints how long the lock was held.
  rollback  undoes what was done (after a swap it swaps back first, after checking the legacy
            table has every row): the legacy table is public.v1_hub_work_allocations again.
  finalize  after a swap: drops the mirror and the legacy table, and leaves the month
            today + 4 without a partition, for pg_partman's registration (migration 0004) to
            make; partman then makes its default partition too (it makes the default only
            when it made at least one month).
  finish    after migrations 0002+ ran: moves the rows of the catch-all partitions into the
            table (partman's default partition takes those no month takes); drops hub_convert.
  status    where the conversion stands (read-only).

Every phase checks the stage first and refuses, changing nothing, when it is out of order.
Schema hub_convert.state records the stage; hub_job_runs may not exist yet (it comes with 0003),
so these runs are not recorded there: their log lines are the record.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import signal
import time

from hubctl import db
from hubctl.dates import add_months, month_label, months
from hubctl.jobs import (EXIT_BUSY, EXIT_FAILED, EXIT_OK, FAILED, OK, JobLock, Logger,
                         Terminated)

SCHEMA = "hub_convert"
TABLE = "v1_hub_work_allocations"
LEGACY_NAME = TABLE + "_legacy"
OTHER_TABLES = ("v1_hub_client_activity_logs", "v1_hub_proxy_toggle_logs",
                "v1_hub_work_slots_history")
KEY = ("allocation_key", "work_date")
CONTROL = "work_date"
LOWER = TABLE + "_convert_before"     # FROM (MINVALUE) TO (first month)
UPPER = TABLE + "_convert_after"      # FROM (after the last month) TO (MAXVALUE)
HOLE = TABLE + "_convert_hole"        # rows of the month left for partman, between finalize and finish
FORWARD_TRIGGER = "hub_convert_mirror"
BACK_TRIGGER = "hub_convert_mirror_back"
MIGRATION_0001 = 1
MIGRATION_0004 = 4

# Migration 0004 registers the table with p_start_partition = the month of today - 120 days and
# p_premake = 4: the new table has at least those months, so partman finds them made.
WINDOW_BACK_DAYS = 120
AHEAD = 4
MAX_MONTHS = 240            # months further back than 20 years hold stray dates, not history
BATCH_BLOCKS = 2048         # 16 MB of the legacy heap per copy transaction
TAIL_BLOCKS = 128           # newest part of the legacy heap re-checked under the swap's lock
PROGRESS_EVERY_S = 5.0
VERIFY_ATTEMPTS = 3
# The maintenance jobs' lock_timeout retry (db.py), also for the swap.
LOCK_RETRY_PAUSES = db.LOCK_RETRY_PAUSES
LOCK_NOT_AVAILABLE = db.LOCK_NOT_AVAILABLE

PHASES = ("check", "prepare", "verify", "swap", "rollback", "finalize", "finish", "status")
# Stages, in order; 'absent' and 'partitioned' mean there is nothing to convert.
STAGES = ("seed", "preparing", "prepared", "swapped", "finalizing")


class Refused(Exception):
    """The phase cannot run in this stage or on this table; nothing was changed."""


# --------------------------------------------------------------------------- pure parts

def partition_name(table: str, month: _dt.date, partman_major: int) -> str:
    """The name pg_partman gives a monthly partition: 4.x `<table>_p2026_08`,
    5.x `<table>_p20260801` (datetime_string 'YYYY_MM' against 'YYYYMMDD')."""
    if partman_major == 4:
        suffix = f"{month.year:04d}_{month.month:02d}"
    elif partman_major == 5:
        suffix = f"{month.year:04d}{month.month:02d}01"
    else:
        raise ValueError(f"pg_partman {partman_major}.x is not supported")
    name = f"{table}_p{suffix}"
    if len(name.encode()) > 63:
        raise ValueError(f"{name} is longer than 63 bytes")
    return name


def window_first(today: _dt.date) -> _dt.date:
    """The first month migration 0004 registers (the month of today - 120 days)."""
    return add_months(today - _dt.timedelta(days=WINDOW_BACK_DAYS), 0)


def plan_months(months_with_rows, today: _dt.date) -> tuple[list, list, list]:
    """(months to make, months with rows before them, months with rows after them).

    One partition per month, without a gap, from the earlier of the first month with rows and
    0004's first month, to the month of today + 4. Rows dated later than that, or more than
    MAX_MONTHS months back (a stray date, not history), are left to the catch-all partitions and
    end in pg_partman's default partition, where a table built by site.yml would have them and
    `hubctl partitions` reports them.
    """
    last = add_months(today, AHEAD)
    oldest = add_months(today, -MAX_MONTHS)
    with_rows = sorted(set(months_with_rows))
    first = min([window_first(today)] + [m for m in with_rows if oldest <= m <= last])
    return (months(first, last), [m for m in with_rows if m < oldest],
            [m for m in with_rows if m > last])


@dataclasses.dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str            # format_type(), e.g. 'character varying(64)'
    not_null: bool
    has_default: bool    # a default, an identity or a generated column


@dataclasses.dataclass(frozen=True)
class Column:
    """A column both tables have: its type in the new table and in the legacy table."""
    name: str
    new_type: str
    legacy_type: str


def match_columns(legacy: list[ColumnInfo], new: list[ColumnInfo]) -> tuple[list, list, list]:
    """(common columns in the new table's order, problems that refuse, warnings).

    Every legacy column must exist in the new table (a column with nowhere to go would be
    lost); every NOT NULL column of the new table without a default must exist in the legacy
    table (the copy would have no value for it). Type casts are checked by the database.
    """
    by_name = {c.name: c for c in legacy}
    new_names = {c.name for c in new}
    problems, warnings = [], []
    for c in legacy:
        if c.name not in new_names:
            problems.append(f"legacy column {c.name} ({c.type}) has no column in the new table; "
                            "its values would be lost")
    for c in new:
        old = by_name.get(c.name)
        if old is None:
            if c.not_null and not c.has_default:
                problems.append(f"new column {c.name} ({c.type}) is NOT NULL without a default "
                                "and the legacy table has no such column")
        elif c.not_null and not old.not_null:
            warnings.append(f"{c.name} is NOT NULL in the new table but not in the legacy one: "
                            "a row with NULL there stops the copy, or is recorded as refused")
    for k in KEY:
        if k not in by_name:
            problems.append(f"the legacy table has no {k} column (part of the new primary key)")
    common = [Column(c.name, c.type, by_name[c.name].type) for c in new if c.name in by_name]
    return common, problems, warnings


def compare_days(legacy: dict, new: dict) -> list:
    """Days whose (count, checksum) differ: [(day, legacy pair or None, new pair or None)]."""
    out = []
    for day in sorted(set(legacy) | set(new)):
        a, b = legacy.get(day), new.get(day)
        if a != b:
            out.append((day, a, b))
    return out


def stage_of(live_kind: str | None, legacy_renamed: bool, scaffold: bool,
             phase: str | None) -> str:
    """Where the conversion stands, from the catalog and hub_convert.state.phase.

    absent       no public.v1_hub_work_allocations at all
    partitioned  it is partitioned and no conversion is under way (nothing to convert)
    seed         it is a plain table and nothing was prepared
    preparing    hub_convert exists; the copy or its verification is not complete
    prepared     copied and verified; ready to swap
    swapped      the new table is live, the legacy one is ..._legacy with writes mirrored to it
    finalizing   the legacy table is gone; migrations 0002+ and `finish` remain
    """
    if phase in ("swapped", "finalizing", "prepared", "preparing"):
        return phase
    if live_kind is None and not legacy_renamed:
        return "absent"
    if scaffold:
        return "preparing"
    if live_kind == "p":
        return "partitioned"
    return "seed"


_ORDER = {
    # phase: {stage: None (run) | ('noop', message) | ('refuse', message)}
    "prepare": {"seed": None, "preparing": None, "prepared": None,
                "swapped": ("refuse", "the tables were already swapped: run finalize once the "
                            "application works on the new table, or rollback"),
                "finalizing": ("refuse", "finalize has begun: run finalize again to complete it")},
    "verify": {"seed": ("refuse", "nothing is prepared: run prepare first"),
               "preparing": None, "prepared": None, "swapped": None,
               "finalizing": ("refuse", "the legacy table was dropped by finalize; "
                              "there is nothing to compare")},
    "swap": {"seed": ("refuse", "nothing is prepared: run prepare first"),
             "preparing": ("refuse", "prepare has not completed (the copy or its "
                           "verification is unfinished): run prepare again"),
             "prepared": None,
             "swapped": ("noop", "the tables are already swapped"),
             "finalizing": ("refuse", "finalize has begun: run finalize again to complete it")},
    "rollback": {"seed": ("noop", "nothing was prepared: there is nothing to roll back"),
                 "preparing": None, "prepared": None, "swapped": None,
                 "finalizing": ("refuse", "finalize dropped the legacy table: there is "
                                "nothing to roll back to (restore a backup if you must)")},
    "finalize": {"seed": ("refuse", "nothing is prepared: run prepare, then swap"),
                 "preparing": ("refuse", "prepare has not completed: run prepare, then swap"),
                 "prepared": ("refuse", "the tables are not swapped yet: run swap first"),
                 "swapped": None, "finalizing": None},
    "finish": {"seed": ("refuse", "run prepare, swap and finalize first"),
               "preparing": ("refuse", "run prepare, swap and finalize first"),
               "prepared": ("refuse", "run swap and finalize first"),
               "swapped": ("refuse", "run finalize first"),
               "finalizing": None},
}


def plan_phase(phase: str, stage: str):
    """None to run the phase, ('noop', why) to do nothing successfully, ('refuse', why)."""
    if phase == "status":
        return None
    if phase == "check":        # prepare's first step
        phase = "prepare"
    if stage in ("absent", "partitioned"):
        what = ("there is no public.v1_hub_work_allocations" if stage == "absent" else
                "public.v1_hub_work_allocations is already partitioned and no conversion is "
                "under way")
        return ("refuse", f"nothing to convert: {what}")
    return _ORDER[phase][stage]


def legacy_index_name(name: str) -> str:
    """The name a legacy index takes when the new table's index of that name moves to public:
    v1_hub_work_allocations_pkey -> v1_hub_work_allocations_legacy_pkey."""
    new = LEGACY_NAME + name[len(TABLE):] if name.startswith(TABLE) else name + "_legacy"
    return new.encode()[:63].decode(errors="ignore")


def progress(blocks_done: int, blocks_total: int, elapsed_s: float) -> dict:
    """Percent, and an ETA from the rate so far (None until there is a rate)."""
    pct = 100.0 if blocks_total <= 0 else 100.0 * blocks_done / blocks_total
    eta = None
    if blocks_done > 0 and elapsed_s > 0 and blocks_total > blocks_done:
        eta = int(round(elapsed_s * (blocks_total - blocks_done) / blocks_done))
    elif blocks_total <= blocks_done:
        eta = 0
    return {"percent": f"{pct:.1f}", "eta_s": eta}


# --------------------------------------------------------------------------- SQL helpers

def _sql():
    from psycopg2 import sql
    return sql


def _ident(*parts):
    return _sql().Identifier(*parts)


def _col_list(columns):
    sql = _sql()
    return sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)


def _row_text(columns, alias: str | None = None):
    """ROW(c1::t1, ...)::text over the common columns, cast to the new table's types, so that
    a row renders the same text from either table."""
    sql = _sql()
    parts = [sql.SQL("{}::{}").format(
        sql.Identifier(alias, c.name) if alias else sql.Identifier(c.name), sql.SQL(c.new_type))
        for c in columns]
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(parts))


def _checksum(columns, alias=None):
    """archive.py's order-independent checksum: the sum of the first 60 bits of md5(row)."""
    return _sql().SQL("coalesce(sum(('x' || substr(md5({}), 1, 15))::bit(60)::bigint), 0)").format(
        _row_text(columns, alias))


def _type_of(columns, name: str, side: str) -> str:
    for c in columns:
        if c.name == name:
            return c.new_type if side == "new" else c.legacy_type
    raise KeyError(name)


@dataclasses.dataclass(frozen=True)
class Relations:
    """The two tables as they are named in the current stage."""
    legacy: tuple
    new: tuple

    @classmethod
    def before_swap(cls):
        return cls(("public", TABLE), (SCHEMA, TABLE))

    @classmethod
    def after_swap(cls):
        return cls(("public", LEGACY_NAME), ("public", TABLE))


# --------------------------------------------------------------------------- the run

class Conversion:
    """One run of one phase: the connection (as hub_owner, lock_timeout set), the log."""

    def __init__(self, conn, log: Logger, pauses=LOCK_RETRY_PAUSES, sleep=time.sleep):
        self.conn, self.log, self.pauses, self.sleep = conn, log, pauses, sleep
        self.changed = False    # reported on the last line, for the playbook's changed status

    def tx(self):
        return db.transaction(self.conn)

    def retry_on_lock(self, step: str, fn):
        """Run fn() (one transaction); after a lock timeout, again after each pause."""
        for attempt in range(len(self.pauses) + 1):
            try:
                return fn()
            except Exception as exc:
                if getattr(exc, "pgcode", None) != LOCK_NOT_AVAILABLE or attempt == len(self.pauses):
                    raise
                self.log.line(step, lock="busy", retry_in_s=self.pauses[attempt], outcome="retry")
                self.sleep(self.pauses[attempt])
        return None  # not reached

    # ----------------------------------------------------------------- catalog reads

    def situation(self) -> tuple[str, dict | None]:
        with self.tx() as cur:
            cur.execute("""
                SELECT (SELECT relkind::text FROM pg_catalog.pg_class
                        WHERE oid = to_regclass('public.v1_hub_work_allocations')),
                       to_regclass('public.v1_hub_work_allocations_legacy') IS NOT NULL,
                       to_regnamespace('hub_convert') IS NOT NULL,
                       to_regclass('hub_convert.state') IS NOT NULL""")
            live_kind, renamed, scaffold, has_state = cur.fetchone()
            state = None
            if has_state:
                cur.execute("SELECT row_to_json(s) FROM hub_convert.state s")
                row = cur.fetchone()
                state = row[0] if row else None
        return stage_of(live_kind, renamed, scaffold, state and state.get("phase")), state

    def columns_of(self, cur, rel) -> list[ColumnInfo]:
        cur.execute("""
            SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                   a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
            FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum""", (db.qualified(*rel),))
        return [ColumnInfo(*r) for r in cur.fetchall()]

    def partitions(self, cur, rel) -> list[tuple[str, str]]:
        cur.execute("""
            SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
            FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = to_regclass(%s) ORDER BY 1""", (db.qualified(*rel),))
        return cur.fetchall()

    def today(self, cur) -> _dt.date:
        cur.execute("SELECT CURRENT_DATE")  # partman works from the server's clock
        return cur.fetchone()[0]


def _state_columns(state: dict) -> list[Column]:
    return [Column(*c) for c in state["columns"]]


# --------------------------------------------------------------------------- compatibility

def check_compatible(cx: Conversion) -> tuple[list[Column], list[str]]:
    """The common columns, or Refused listing every reason the legacy table cannot be
    converted as it is. Reads and rolls back only."""
    rel = Relations.before_swap()
    problems, warnings = [], []
    with cx.tx() as cur:
        cur.execute("""
            SELECT c.relkind::text, c.relispartition,
                   EXISTS (SELECT FROM pg_catalog.pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid)
            FROM pg_catalog.pg_class c WHERE c.oid = 'public.v1_hub_work_allocations'::regclass""")
        kind, is_partition, inherits = cur.fetchone()
        if kind != "r" or is_partition or inherits:
            raise Refused("public.v1_hub_work_allocations is not a plain table (it is a partition, "
                          "or takes part in inheritance)")
        cur.execute("SELECT to_regclass(%s) IS NULL", (db.qualified(*rel.new),))
        if cur.fetchone()[0]:
            raise Refused("hub_convert.v1_hub_work_allocations does not exist: the playbook "
                          "creates it from migration 0001 before prepare")
        legacy_cols = cx.columns_of(cur, rel.legacy)
        new_cols = cx.columns_of(cur, rel.new)
        common, col_problems, warnings = match_columns(legacy_cols, new_cols)
        problems += col_problems

        # A unique index on the key lets the copy skip rows already mirrored without losing
        # any, and the mirror back to the legacy table (after the swap) find rows fast.
        cur.execute("""
            SELECT array_agg(a.attname::text ORDER BY k.n)
            FROM pg_catalog.pg_index x
            CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k (attnum, n)
            JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
            WHERE x.indrelid = 'public.v1_hub_work_allocations'::regclass
              AND x.indisunique AND x.indisvalid AND x.indpred IS NULL
            GROUP BY x.indexrelid""")
        keys = [r[0] for r in cur.fetchall()]
        if not any(k and k[0] == KEY[0] and set(k) <= set(KEY) for k in keys):
            problems.append("the legacy table has no unique index on (allocation_key) or "
                            "(allocation_key, work_date); make one first: CREATE UNIQUE INDEX "
                            "CONCURRENTLY v1_hub_work_allocations_convert_key ON "
                            "public.v1_hub_work_allocations (allocation_key, work_date)")
        cur.execute("""
            SELECT DISTINCT r.ev_class::regclass::text
            FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
            WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass
              AND d.refobjid = 'public.v1_hub_work_allocations'::regclass
              AND r.ev_class <> 'public.v1_hub_work_allocations'::regclass ORDER BY 1""")
        views = [r[0] for r in cur.fetchall()]
        if views:
            problems.append(f"views use the legacy table and would follow it to ..._legacy: "
                            f"{', '.join(views)}; drop them and create them again after the swap")
        cur.execute("""
            SELECT conname || ' on ' || conrelid::regclass::text FROM pg_catalog.pg_constraint
            WHERE confrelid = 'public.v1_hub_work_allocations'::regclass ORDER BY 1""")
        fks = [r[0] for r in cur.fetchall()]
        if fks:
            problems.append(f"foreign keys reference the legacy table: {', '.join(fks)}")
        cur.execute("""
            SELECT tgname FROM pg_catalog.pg_trigger
            WHERE tgrelid = 'public.v1_hub_work_allocations'::regclass AND NOT tgisinternal
              AND tgname <> %s ORDER BY 1""", (FORWARD_TRIGGER,))
        triggers = [r[0] for r in cur.fetchall()]
        if triggers:
            warnings.append(f"the legacy table's own triggers are not carried over: "
                            f"{', '.join(triggers)}")
        for other in OTHER_TABLES:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{other}",))
            if cur.fetchone()[0]:
                problems.append(f"public.{other} exists: this playbook converts "
                                f"v1_hub_work_allocations only, and migration 0001 makes {other} "
                                "too; rename or drop the existing one if it is unused")

        if not col_problems:
            problems += _cast_problems(cur, common)
        cx.conn.rollback()
    if problems:
        raise Refused("the legacy table cannot be converted as it is; it was not touched:\n  - "
                      + "\n  - ".join(problems))
    return common, warnings


def _cast_problems(cur, common) -> list[str]:
    """Parse, in temporary tables rolled back, the casts the conversion uses: legacy to new by
    assignment (the copy, the mirror) and explicitly (the checksum), new to legacy by assignment
    (the mirror back). Needs no privilege on the legacy table, which may not be hub_owner's yet."""
    sql = _sql()
    problems = []
    for name, target, source in (
            ("hub_convert_probe_new", "new_type", "legacy_type"),
            ("hub_convert_probe_legacy", "legacy_type", "new_type")):
        cur.execute("SAVEPOINT probe")
        try:
            cur.execute(sql.SQL("CREATE TEMPORARY TABLE {} ({})").format(
                sql.Identifier(name), sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(getattr(c, target)))
                    for c in common)))
            for c in common:
                cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT NULL::{}").format(
                    sql.Identifier(name), sql.Identifier(c.name), sql.SQL(getattr(c, source))))
                if target == "new_type":
                    cur.execute(sql.SQL("SELECT NULL::{}::{}").format(
                        sql.SQL(c.legacy_type), sql.SQL(c.new_type)))
        except Exception as exc:
            if not db.is_db_error(exc):
                raise
            problems.append("a column's type does not convert: " + db.describe_error(exc)[0])
        finally:
            cur.execute("ROLLBACK TO SAVEPOINT probe")
    return problems


def check_phase(cx: Conversion, state: dict | None) -> None:
    """Before prepare touches the legacy table: refuse a table that cannot be converted. On a
    first prepare (no state yet) the new tables made for the check are dropped again, so a
    refusal leaves the database as it was."""
    try:
        common, warnings = check_compatible(cx)
    except Refused:
        if state is None:
            with cx.tx() as cur:
                cur.execute("DROP SCHEMA IF EXISTS hub_convert CASCADE")
            cx.log.line("check", dropped="schema hub_convert (made for this check)", outcome=OK)
        raise
    for w in warnings:
        cx.log.line("check", warning=w, outcome="warning")
    cx.log.line("check", columns=[c.name for c in common], outcome=OK)


# --------------------------------------------------------------------------- prepare

STATE_DDL = """
CREATE TABLE IF NOT EXISTS hub_convert.state (
    id              integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    phase           text        NOT NULL CHECK (phase IN ('preparing', 'prepared', 'swapped', 'finalizing')),
    partman_major   integer     NOT NULL,
    columns         jsonb       NOT NULL,
    copy_end_block  bigint,
    copied_block    bigint      NOT NULL DEFAULT 0,
    copied_rows     bigint      NOT NULL DEFAULT 0,
    verified_at     timestamptz,
    verified_rows   bigint,
    swapped_at      timestamptz,
    lock_ms         integer,
    renamed_indexes jsonb       NOT NULL DEFAULT '{}',
    moved_tables    text[]      NOT NULL DEFAULT '{}',
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE hub_convert.state IS
    'Where hubctl convert stands (playbooks/migrate-partitioned.yml); dropped by finish or rollback.';
-- Keys the mirror deleted before the copy had brought them over: the copy may still bring
-- them (it reads an older snapshot), so they are deleted again after each batch.
CREATE TABLE IF NOT EXISTS hub_convert.pending_deletes (
    allocation_key uuid NOT NULL,
    work_date      date NOT NULL
);
-- Writes a mirror could not repeat on the other table. The application's statement went on;
-- verify fails while any are here.
CREATE TABLE IF NOT EXISTS hub_convert.refused_rows (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    refused_at     timestamptz NOT NULL DEFAULT now(),
    direction      text        NOT NULL,
    operation      text        NOT NULL,
    allocation_key text,
    work_date      text,
    sqlstate       text,
    message        text
);
"""


def prepare(cx: Conversion, state: dict | None) -> None:
    version, major, _ = _partman(cx)
    common, warnings = check_compatible(cx)
    for w in warnings:
        cx.log.line("check", warning=w, outcome="warning")
    cx.log.line("check", columns=[c.name for c in common], partman=version, outcome=OK)
    cols_json = [[c.name, c.new_type, c.legacy_type] for c in common]
    if state is not None and state["columns"] != cols_json:
        raise Refused("the legacy table's columns changed since prepare began; run rollback, "
                      "then prepare again")
    with cx.tx() as cur:
        cur.execute(STATE_DDL)
        cur.execute("""
            INSERT INTO hub_convert.state (phase, partman_major, columns)
            VALUES ('preparing', %s, %s) ON CONFLICT (id) DO NOTHING""",
                    (major, json.dumps(cols_json)))
        first_run = cur.rowcount == 1
    if first_run:
        cx.changed = True
        grant_like_public(cx)
    make_partitions(cx, major, common)
    install_forward_mirror(cx, common)
    copy_rows(cx, common)
    result = verify(cx, common, Relations.before_swap(), "to_new")
    if not result.ok:
        raise Refused(result.message())
    _record_verified(cx, result)


def _record_verified(cx: Conversion, result) -> None:
    with cx.tx() as cur:
        cur.execute("UPDATE hub_convert.state SET verified_at = now(), verified_rows = %s",
                    (result.rows,))
        cur.execute("UPDATE hub_convert.state SET phase = 'prepared', updated_at = now() "
                    "WHERE phase = 'preparing'")
        if cur.rowcount:
            cx.changed = True


def _partman(cx: Conversion):
    with cx.tx() as cur:
        return db.partman_info(cur)


def grant_like_public(cx: Conversion) -> None:
    """Give the four new parents and their sequences the privileges that hub_owner's default
    privileges give a table it creates in public (they were created in hub_convert)."""
    sql = _sql()
    granted = 0
    with cx.tx() as cur:
        for kind, rels in (("r", _moving_tables(cur)), ("S", _moving_sequences(cur))):
            cur.execute("""
                SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                       a.privilege_type
                FROM pg_catalog.pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
                WHERE d.defaclrole = current_user::regrole AND d.defaclobjtype = %s
                  AND d.defaclnamespace IN (0, 'public'::regnamespace)""", (kind,))
            grants = cur.fetchall()
            for name in rels:
                for grantee, privilege in grants:
                    cur.execute(sql.SQL("GRANT {} ON {} TO {}").format(
                        sql.SQL(privilege), _ident(SCHEMA, name), sql.SQL(grantee)))
                    granted += 1
    cx.log.line("grants", granted=granted, outcome=OK)


def _moving_tables(cur) -> list[str]:
    """The project's four tables as they stand in hub_convert."""
    cur.execute("""
        SELECT c.relname FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'hub_convert'::regnamespace AND c.relname = ANY(%s) ORDER BY 1""",
                ([TABLE, *OTHER_TABLES],))
    return [r[0] for r in cur.fetchall()]


def _moving_sequences(cur) -> list[str]:
    """The sequences of their identity columns (they move with their tables)."""
    cur.execute("""
        SELECT s.relname FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
        JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
          AND t.relnamespace = 'hub_convert'::regnamespace AND t.relname = ANY(%s) ORDER BY 1""",
                ([TABLE, *OTHER_TABLES],))
    return [r[0] for r in cur.fetchall()]


def make_partitions(cx: Conversion, major: int, common) -> None:
    """The months (partman's names) and the two catch-alls; on a rerun, only what is missing."""
    rel = Relations.before_swap()
    with cx.tx() as cur:
        existing = cx.partitions(cur, rel.new)
        today = cx.today(cur)
    if existing:
        recut(cx, add_months(today, AHEAD), hole=None, major=major)
        return
    started = time.monotonic()
    with cx.tx() as cur:
        cur.execute(_sql().SQL("SELECT DISTINCT date_trunc('month', {col})::date FROM ONLY {rel}")
                    .format(col=_ident(CONTROL), rel=_ident(*rel.legacy)))
        with_rows = [r[0] for r in cur.fetchall()]
    wanted, before, beyond = plan_months(with_rows, today)
    cx.log.line("months", with_rows=len(with_rows), make=len(wanted),
                first=month_label(wanted[0]), last=month_label(wanted[-1]),
                to_catch_all=[month_label(m) for m in before + beyond] or None,
                duration_ms=_ms(started), outcome=OK)

    def create():
        with cx.tx() as cur:
            _create_months(cur, major, wanted, None)
            _create_catch_all(cur, LOWER, None, wanted[0])
            _create_catch_all(cur, UPPER, add_months(wanted[-1], 1), None)
    cx.retry_on_lock("partitions", create)
    cx.changed = True
    cx.log.line("partitions", made=len(wanted) + 2, catch_all=[LOWER, UPPER], outcome=OK)


def _create_months(cur, major: int, wanted, hole) -> int:
    sql = _sql()
    made = 0
    for month in wanted:
        if month == hole:
            continue
        name = partition_name(TABLE, month, major)
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (db.qualified("public", name),))
        if cur.fetchone()[0]:
            raise Refused(f"public.{name} exists and is not a partition of the new table; "
                          "rename or drop it (pg_partman will want that name)")
        cur.execute(sql.SQL("CREATE TABLE {part} PARTITION OF {parent} "
                            "FOR VALUES FROM (%s) TO (%s)").format(
            part=_ident("public", name), parent=_parent_ident(cur)),
            (month, add_months(month, 1)))
        made += 1
    return made


def _parent_rel(cur) -> tuple:
    """The new table wherever it is: hub_convert before the swap, public after."""
    cur.execute("SELECT relkind = 'p' FROM pg_catalog.pg_class "
                "WHERE oid = to_regclass('public.v1_hub_work_allocations')")
    row = cur.fetchone()
    return ("public", TABLE) if row and row[0] else (SCHEMA, TABLE)


def _parent_ident(cur):
    return _ident(*_parent_rel(cur))


def _create_catch_all(cur, name: str, low, high) -> None:
    sql = _sql()
    lo = sql.Literal(low.isoformat()) if low else sql.SQL("MINVALUE")
    hi = sql.Literal(high.isoformat()) if high else sql.SQL("MAXVALUE")
    cur.execute(sql.SQL("CREATE TABLE {part} PARTITION OF {parent} FOR VALUES FROM ({lo}) TO ({hi})")
                .format(part=_ident("public", name), parent=_parent_ident(cur), lo=lo, hi=hi))


def recut(cx: Conversion, last: _dt.date, hole, major: int) -> None:
    """Make the months up to `last` (but the hole) and start the upper catch-all after
    max(last, hole). Rows of the old catch-all go where they now belong; rows of the hole
    month wait in public.<HOLE> for `finish`. One transaction under the lock."""
    from hubctl.partitions import classify_partitions
    sql = _sql()

    def once():
        with cx.tx() as cur:
            parent_rel = _parent_rel(cur)
            parent = _ident(*parent_rel)
            parts = classify_partitions(cx.partitions(cur, parent_rel))
            have = set(parts.months)
            top = max(last, hole) if hole else last
            upper_from = add_months(top, 1)
            cur.execute("SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_class c "
                        "WHERE c.oid = to_regclass(%s)", (db.qualified("public", UPPER),))
            row = cur.fetchone()
            upper_bound = row[0] if row else None
            wanted = [m for m in months(add_months(max(have), 1), last)] if have and max(have) < last else []
            hole_attached = hole in have
            if (not wanted and not hole_attached
                    and upper_bound == f"FOR VALUES FROM ('{upper_from.isoformat()}') TO (MAXVALUE)"):
                return None
            cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(parent))
            cols = [c.name for c in cx.columns_of(cur, parent_rel)]
            collist = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            old_upper = UPPER + "_old"
            if upper_bound is not None:
                cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    parent, _ident("public", UPPER)))
                cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    _ident("public", UPPER), _ident(old_upper)))
            if hole:
                # A plain table without indexes: the rows of the month left for partman wait
                # here, and the index names stay free for the partition partman makes.
                cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (LIKE {})").format(
                    _ident("public", HOLE), parent))
            moved = 0
            if hole_attached:
                name = parts.months[hole]
                cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                    parent, _ident("public", name)))
                cur.execute(sql.SQL("INSERT INTO {h} ({c}) SELECT {c} FROM {p}").format(
                    h=_ident("public", HOLE), c=collist, p=_ident("public", name)))
                moved += cur.rowcount
                cur.execute(sql.SQL("DROP TABLE {}").format(_ident("public", name)))
            made = _create_months(cur, major, wanted, hole)
            _create_catch_all(cur, UPPER, upper_from, None)
            if upper_bound is not None:
                if hole:
                    cur.execute(sql.SQL(
                        "WITH m AS (DELETE FROM {o} WHERE {k} >= %s AND {k} < %s RETURNING *) "
                        "INSERT INTO {h} ({c}) SELECT {c} FROM m").format(
                        o=_ident("public", old_upper), k=_ident(CONTROL), h=_ident("public", HOLE),
                        c=collist), (hole, add_months(hole, 1)))
                    moved += cur.rowcount
                cur.execute(sql.SQL("INSERT INTO {p} ({c}) SELECT {c} FROM {o}").format(
                    p=parent, c=collist, o=_ident("public", old_upper)))
                moved += cur.rowcount
                cur.execute(sql.SQL("DROP TABLE {}").format(_ident("public", old_upper)))
            return made, moved
    started = time.monotonic()
    result = cx.retry_on_lock("recut", once)
    if result is not None:
        made, moved = result
        cx.changed = True
        cx.log.line("recut", last=month_label(last), hole=month_label(hole) if hole else None,
                    made=made, rows_moved=moved, duration_ms=_ms(started), outcome=OK)


def forward_mirror_sql(common) -> str:
    """The trigger function that repeats a write on the legacy table on the new table."""
    sql = _sql()
    new = _ident(SCHEMA, TABLE)
    non_key = [c for c in common if c.name not in KEY]
    return sql.SQL("""
CREATE OR REPLACE FUNCTION hub_convert.mirror_forward() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
-- hubctl convert: repeat this write of the legacy table on the new table, in the same
-- transaction. A write the new table refuses is recorded, never raised: the application's
-- statement must not fail for the conversion's sake.
DECLARE
    old_key_goes boolean := TG_OP = 'DELETE';
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_key_goes := OLD.allocation_key IS DISTINCT FROM NEW.allocation_key
                        OR OLD.work_date IS DISTINCT FROM NEW.work_date;
    END IF;
    IF old_key_goes THEN
        DELETE FROM {new} WHERE allocation_key = OLD.allocation_key::uuid AND work_date = OLD.work_date::date;
        IF NOT FOUND THEN
            INSERT INTO hub_convert.pending_deletes (allocation_key, work_date)
            VALUES (OLD.allocation_key::uuid, OLD.work_date::date);
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO {new} AS t ({cols}) VALUES ({vals})
        ON CONFLICT (allocation_key, work_date) DO UPDATE SET {sets};
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO hub_convert.refused_rows (direction, operation, allocation_key, work_date, sqlstate, message)
        VALUES ('to_new', TG_OP, OLD.allocation_key::text, OLD.work_date::text, SQLSTATE, SQLERRM);
    ELSE
        INSERT INTO hub_convert.refused_rows (direction, operation, allocation_key, work_date, sqlstate, message)
        VALUES ('to_new', TG_OP, NEW.allocation_key::text, NEW.work_date::text, SQLSTATE, SQLERRM);
    END IF;
    RETURN NULL;
END
$fn$""").format(
        new=new, cols=_col_list(common),
        vals=sql.SQL(", ").join(sql.SQL("NEW.{}").format(sql.Identifier(c.name)) for c in common),
        sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c.name))
                                for c in non_key) if non_key else sql.SQL("allocation_key = EXCLUDED.allocation_key"))


def back_mirror_sql(common) -> str:
    """The trigger function that repeats a write on the new table on the legacy table."""
    sql = _sql()
    legacy = _ident("public", LEGACY_NAME)
    key_t = _type_of(common, "allocation_key", "legacy")
    date_t = _type_of(common, "work_date", "legacy")
    non_key = [c for c in common if c.name not in KEY]
    insert = sql.SQL("INSERT INTO {legacy} ({cols}) VALUES ({vals});").format(
        legacy=legacy, cols=_col_list(common),
        vals=sql.SQL(", ").join(sql.SQL("NEW.{}").format(sql.Identifier(c.name)) for c in common))
    return sql.SQL("""
CREATE OR REPLACE FUNCTION hub_convert.mirror_back() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
-- hubctl convert: after the swap, repeat this write of the new table on the legacy table, so
-- that a rollback loses nothing. A write the legacy table refuses is recorded, never raised.
DECLARE
    key_changed boolean := false;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        key_changed := OLD.allocation_key IS DISTINCT FROM NEW.allocation_key
                       OR OLD.work_date IS DISTINCT FROM NEW.work_date;
    END IF;
    IF TG_OP = 'DELETE' OR key_changed THEN
        DELETE FROM ONLY {legacy}
        WHERE allocation_key = OLD.allocation_key::{key_t} AND work_date = OLD.work_date::{date_t};
    END IF;
    IF TG_OP = 'INSERT' OR key_changed THEN
        {insert}
    ELSIF TG_OP = 'UPDATE' THEN
        UPDATE ONLY {legacy} SET {sets}
        WHERE allocation_key = NEW.allocation_key::{key_t} AND work_date = NEW.work_date::{date_t};
        IF NOT FOUND THEN
            {insert}
        END IF;
    END IF;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO hub_convert.refused_rows (direction, operation, allocation_key, work_date, sqlstate, message)
        VALUES ('to_legacy', TG_OP, OLD.allocation_key::text, OLD.work_date::text, SQLSTATE, SQLERRM);
    ELSE
        INSERT INTO hub_convert.refused_rows (direction, operation, allocation_key, work_date, sqlstate, message)
        VALUES ('to_legacy', TG_OP, NEW.allocation_key::text, NEW.work_date::text, SQLSTATE, SQLERRM);
    END IF;
    RETURN NULL;
END
$fn$""").format(
        legacy=legacy, key_t=sql.SQL(key_t), date_t=sql.SQL(date_t), insert=insert,
        sets=sql.SQL(", ").join(sql.SQL("{0} = NEW.{0}").format(sql.Identifier(c.name))
                                for c in non_key) if non_key else sql.SQL("allocation_key = NEW.allocation_key"))


def install_forward_mirror(cx: Conversion, common) -> None:
    sql = _sql()
    legacy = _ident("public", TABLE)

    def once():
        with cx.tx() as cur:
            cur.execute(forward_mirror_sql(common))
            cur.execute("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgname = %s "
                        "AND tgrelid = 'public.v1_hub_work_allocations'::regclass", (FORWARD_TRIGGER,))
            if cur.fetchone() is None:
                # SHARE ROW EXCLUSIVE: waits for the writers in flight, whose rows the copy
                # then sees; every later write fires the mirror.
                cur.execute(sql.SQL(
                    "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
                    "FOR EACH ROW EXECUTE FUNCTION hub_convert.mirror_forward()").format(
                    _ident(FORWARD_TRIGGER), legacy))
                return True
            return False
    made = cx.retry_on_lock("mirror", once)
    cx.changed = cx.changed or made
    with cx.tx() as cur:
        # The copy covers the heap as it is now: rows written from here on are mirrored.
        cur.execute("""
            UPDATE hub_convert.state
            SET copy_end_block = pg_relation_size('public.v1_hub_work_allocations')
                                 / current_setting('block_size')::bigint, updated_at = now()
            WHERE copy_end_block IS NULL RETURNING copy_end_block""")
        row = cur.fetchone()
    cx.log.line("mirror", trigger=FORWARD_TRIGGER, installed=made,
                copy_end_block=row[0] if row else None, outcome=OK)


def copy_rows(cx: Conversion, common) -> None:
    """Copy the legacy heap up to copy_end_block in ranges of BATCH_BLOCKS, each range and
    its progress in one transaction; rows already there (mirrored) are skipped."""
    sql = _sql()
    with cx.tx() as cur:
        cur.execute("SELECT copied_block, copy_end_block, copied_rows FROM hub_convert.state")
        done, end, rows = cur.fetchone()
    if done >= end:
        cx.log.line("copy", blocks=f"{done}/{end}", rows=rows, outcome=OK, note="already copied")
        return
    stmt = sql.SQL("""
        INSERT INTO {new} ({cols}) SELECT {cols} FROM ONLY {old}
        WHERE ctid >= %s::tid AND ctid < %s::tid
        ON CONFLICT (allocation_key, work_date) DO NOTHING""").format(
        new=_ident(SCHEMA, TABLE), old=_ident("public", TABLE), cols=_col_list(common))
    started = time.monotonic()
    first = done
    last_line = 0.0
    cx.changed = True
    while done < end:
        upto = min(done + BATCH_BLOCKS, end)
        with cx.tx() as cur:
            cur.execute(stmt, (f"({done},0)", f"({upto},0)"))
            batch = cur.rowcount
            cur.execute("UPDATE hub_convert.state SET copied_block = %s, copied_rows = copied_rows + %s, "
                        "updated_at = now()", (upto, batch))
        apply_pending_deletes(cx)
        done, rows = upto, rows + batch
        elapsed = time.monotonic() - started
        if time.monotonic() - last_line >= PROGRESS_EVERY_S or done >= end:
            last_line = time.monotonic()
            p = progress(done - first, end - first, elapsed)
            cx.log.line("copy", blocks=f"{done}/{end}", percent=p["percent"], rows=rows,
                        rows_per_s=int(rows / elapsed) if elapsed > 0 else None,
                        eta_s=p["eta_s"], outcome=OK)


def apply_pending_deletes(cx: Conversion) -> int:
    """Delete from the new table the keys the mirror deleted before the copy brought them."""
    with cx.tx() as cur:
        cur.execute("""
            WITH p AS (DELETE FROM hub_convert.pending_deletes RETURNING allocation_key, work_date)
            DELETE FROM hub_convert.v1_hub_work_allocations n USING p
            WHERE n.allocation_key = p.allocation_key AND n.work_date = p.work_date
              AND NOT EXISTS (SELECT FROM ONLY public.v1_hub_work_allocations l
                              WHERE l.allocation_key::uuid = p.allocation_key
                                AND l.work_date::date = p.work_date)""")
        return cur.rowcount


# --------------------------------------------------------------------------- verify

@dataclasses.dataclass
class Verified:
    days: int
    rows: int
    mismatches: list
    refused: int
    direction: str

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.refused

    def message(self) -> str:
        parts = []
        if self.mismatches:
            parts.append(f"{len(self.mismatches)} day(s) differ between the legacy and the new "
                         f"table (first: {self.mismatches[0][0]})")
        if self.refused:
            parts.append(f"{self.refused} write(s) could not be mirrored ({self.direction}; see "
                         "hub_convert.refused_rows)")
        return "; ".join(parts) + ": run rollback, correct the cause, and prepare again"


def verify(cx: Conversion, common, rel: Relations, direction: str) -> Verified:
    """Per-day counts and checksums of both tables in one REPEATABLE READ snapshot; retried
    twice when they differ (a key deleted by a transaction still open at the first try)."""
    sql = _sql()
    per_day = sql.SQL("SELECT {col}::date, count(*), {sum}::text FROM {only}{rel} AS t GROUP BY 1")
    result = None
    for attempt in range(VERIFY_ATTEMPTS):
        if rel == Relations.before_swap():
            apply_pending_deletes(cx)
        started = time.monotonic()
        cx.conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        legacy = new = {}
        refused = 0
        try:
            with cx.tx() as cur:
                cur.execute(per_day.format(col=_ident(CONTROL), sum=_checksum(common, "t"),
                                           only=sql.SQL("ONLY "), rel=_ident(*rel.legacy)))
                legacy = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
                cur.execute(per_day.format(col=_ident(CONTROL), sum=_checksum(common, "t"),
                                           only=sql.SQL(""), rel=_ident(*rel.new)))
                new = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
                cur.execute("SELECT count(*) FROM hub_convert.refused_rows WHERE direction = %s",
                            (direction,))
                refused = cur.fetchone()[0]
        finally:
            cx.conn.set_session(isolation_level="DEFAULT", readonly="DEFAULT")
        diff = compare_days(legacy, new)
        result = Verified(days=len(legacy), rows=sum(v[0] for v in legacy.values()),
                          mismatches=diff, refused=refused, direction=direction)
        cx.log.line("verify", attempt=attempt + 1, days=result.days, rows=result.rows,
                    new_rows=sum(v[0] for v in new.values()), mismatched_days=len(diff),
                    refused=refused, duration_ms=_ms(started),
                    outcome=OK if result.ok else FAILED)
        for day, a, b in diff[:20]:
            cx.log.line("verify_day", day=day, legacy_rows=a[0] if a else 0,
                        legacy_checksum=a[1] if a else None, new_rows=b[0] if b else 0,
                        new_checksum=b[1] if b else None, outcome=FAILED)
        if result.ok or refused:
            break
        cx.sleep(1)
    return result


def verify_phase(cx: Conversion, stage: str, state: dict) -> None:
    common = _state_columns(state)
    if stage == "swapped":
        result = verify(cx, common, Relations.after_swap(), "to_legacy")
    else:
        with cx.tx() as cur:
            cur.execute("SELECT copied_block, copy_end_block FROM hub_convert.state")
            done, end = cur.fetchone()
        if end is None or done < end:
            raise Refused(f"the copy is not complete ({done}/{end} blocks): run prepare")
        result = verify(cx, common, Relations.before_swap(), "to_new")
        if result.ok:
            _record_verified(cx, result)
        else:
            with cx.tx() as cur:
                cur.execute("UPDATE hub_convert.state SET phase = 'preparing', verified_at = NULL, "
                            "updated_at = now() WHERE phase <> 'preparing' OR verified_at IS NOT NULL")
                cx.changed = cx.changed or cur.rowcount > 0
    if not result.ok:
        raise Refused(result.message())


# --------------------------------------------------------------------------- swap

def swap(cx: Conversion, state: dict) -> None:
    common = _state_columns(state)
    result = verify(cx, common, Relations.before_swap(), "to_new")
    if not result.ok:
        with cx.tx() as cur:
            cur.execute("UPDATE hub_convert.state SET phase = 'preparing', verified_at = NULL")
        raise Refused(result.message())
    sql = _sql()
    legacy, new = _ident("public", TABLE), _ident(SCHEMA, TABLE)
    timing = {}

    def once():
        with cx.tx() as cur:
            asked = time.monotonic()
            cur.execute(sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(legacy, new))
            timing["locked"] = time.monotonic()
            timing["waited_ms"] = int(round((timing["locked"] - asked) * 1000))
            # Nothing writes now: finish the pending deletes and check the newest rows.
            apply_pending_deletes_locked(cur)
            cur.execute("SELECT tgenabled FROM pg_catalog.pg_trigger WHERE tgname = %s "
                        "AND tgrelid = 'public.v1_hub_work_allocations'::regclass", (FORWARD_TRIGGER,))
            row = cur.fetchone()
            if row is None or row[0] == "D":
                raise Refused(f"the mirror trigger {FORWARD_TRIGGER} is missing or disabled: run "
                              "rollback, then prepare again")
            cur.execute("SELECT count(*) FROM hub_convert.refused_rows WHERE direction = 'to_new'")
            if cur.fetchone()[0]:
                raise Refused("writes were refused by the new table since the verification "
                              "(hub_convert.refused_rows): run rollback, correct, prepare again")
            cur.execute("SELECT greatest(pg_relation_size('public.v1_hub_work_allocations') "
                        "/ current_setting('block_size')::bigint - %s, 0)", (TAIL_BLOCKS,))
            tail = cur.fetchone()[0]
            # A key lookup per row of the tail (a hash join would read the whole new table).
            cur.execute("SET LOCAL enable_hashjoin = off")
            cur.execute("SET LOCAL enable_mergejoin = off")
            cur.execute(sql.SQL("""
                SELECT count(*), (SELECT count(*) FROM ONLY {old} WHERE ctid >= %s::tid)
                FROM ONLY {old} AS l
                WHERE l.ctid >= %s::tid
                  AND NOT EXISTS (SELECT FROM {new} AS n
                                  WHERE n.allocation_key = l.allocation_key::uuid
                                    AND n.work_date = l.work_date::date
                                    AND {nrow} = {lrow})""").format(
                old=legacy, new=new, nrow=_row_text(common, "n"), lrow=_row_text(common, "l")),
                (f"({tail},0)", f"({tail},0)"))
            missing, tail_rows = cur.fetchone()
            cur.execute("RESET enable_hashjoin")
            cur.execute("RESET enable_mergejoin")
            timing["tail_rows"] = tail_rows
            timing["checked_ms"] = int(round((time.monotonic() - timing["locked"]) * 1000))
            if missing:
                raise Refused(f"{missing} of the newest legacy rows are not in the new table: "
                              "run verify; if it fails, rollback and prepare again")
            renamed = rename_clashing_indexes(cur)
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(legacy, _ident(LEGACY_NAME)))
            cur.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
                _ident(FORWARD_TRIGGER), _ident("public", LEGACY_NAME)))
            cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA public").format(new))
            moved = []
            for other in OTHER_TABLES:
                cur.execute("SELECT to_regclass(%s) IS NULL", (f"public.{other}",))
                if cur.fetchone()[0]:
                    cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA public").format(
                        _ident(SCHEMA, other)))
                    moved.append(other)
            grants = copy_grants(cur, ("public", LEGACY_NAME), ("public", TABLE))
            cur.execute(back_mirror_sql(common))
            cur.execute(sql.SQL(
                "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
                "FOR EACH ROW EXECUTE FUNCTION hub_convert.mirror_back()").format(
                _ident(BACK_TRIGGER), _ident("public", TABLE)))
            cur.execute("""
                INSERT INTO public.hub_schema_migrations (version, name, checksum)
                SELECT version, name, checksum FROM hub_convert.hub_schema_migrations
                WHERE version = %s ON CONFLICT (version) DO NOTHING""", (MIGRATION_0001,))
            cur.execute("""
                UPDATE hub_convert.state SET phase = 'swapped', swapped_at = now(),
                       renamed_indexes = %s, moved_tables = %s, updated_at = now()""",
                        (json.dumps(renamed), moved))
            timing.update(renamed=renamed, moved=moved, grants=grants)
        timing["held_ms"] = _ms(timing["locked"])

    cx.retry_on_lock("swap", once)
    cx.changed = True
    with cx.tx() as cur:
        cur.execute("UPDATE hub_convert.state SET lock_ms = %s", (timing["held_ms"],))
    cx.log.line("swap", lock_held_ms=timing["held_ms"], lock_waited_ms=timing["waited_ms"],
                checks_ms=timing["checked_ms"], newest_rows_checked=timing["tail_rows"],
                legacy=f"public.{LEGACY_NAME}", renamed_indexes=list(timing["renamed"].values()) or None,
                moved_to_public=timing["moved"] or None, grants_copied=timing["grants"],
                migration="0001 recorded", outcome=OK)


def apply_pending_deletes_locked(cur) -> None:
    cur.execute("""
        WITH p AS (DELETE FROM hub_convert.pending_deletes RETURNING allocation_key, work_date)
        DELETE FROM hub_convert.v1_hub_work_allocations n USING p
        WHERE n.allocation_key = p.allocation_key AND n.work_date = p.work_date
          AND NOT EXISTS (SELECT FROM ONLY public.v1_hub_work_allocations l
                          WHERE l.allocation_key::uuid = p.allocation_key
                            AND l.work_date::date = p.work_date)""")


def rename_clashing_indexes(cur) -> dict:
    """Rename the legacy table's indexes whose names the new tables' indexes and sequences
    bring to public (e.g. v1_hub_work_allocations_pkey); refuse any other clash."""
    sql = _sql()
    cur.execute("""
        SELECT ci.relname FROM pg_catalog.pg_index x
        JOIN pg_catalog.pg_class ci ON ci.oid = x.indexrelid
        JOIN pg_catalog.pg_class t ON t.oid = x.indrelid
        WHERE t.relnamespace = 'hub_convert'::regnamespace AND t.relname = ANY(%s)""",
                ([TABLE, *OTHER_TABLES],))
    incoming = {r[0] for r in cur.fetchall()} | set(_moving_sequences(cur))
    cur.execute("""
        SELECT c.relname, c.relkind::text,
               EXISTS (SELECT FROM pg_catalog.pg_index x WHERE x.indexrelid = c.oid
                       AND x.indrelid = 'public.v1_hub_work_allocations'::regclass)
        FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY(%s) ORDER BY 1""",
                (sorted(incoming),))
    renamed = {}
    for name, kind, of_legacy in cur.fetchall():
        if not of_legacy:
            raise Refused(f"public.{name} exists (relkind {kind}) and clashes with a name the "
                          "new tables bring to public; rename it first")
        target = legacy_index_name(name)
        cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            _ident("public", name), _ident(target)))
        renamed[name] = target
    return renamed


def copy_grants(cur, source, target) -> int:
    """Grant on target what source grants to anyone but its owner."""
    sql = _sql()
    cur.execute("""
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
               a.privilege_type
        FROM pg_catalog.pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
        WHERE c.oid = to_regclass(%s) AND a.grantee <> c.relowner""", (db.qualified(*source),))
    grants = cur.fetchall()
    for grantee, privilege in grants:
        cur.execute(sql.SQL("GRANT {} ON {} TO {}").format(
            sql.SQL(privilege), _ident(*target), sql.SQL(grantee)))
    return len(grants)


# --------------------------------------------------------------------------- rollback

def rollback(cx: Conversion, stage: str, state: dict | None) -> None:
    if stage == "swapped":
        swap_back(cx, state)
    drop_scaffold(cx)


def swap_back(cx: Conversion, state: dict) -> None:
    common = _state_columns(state)
    result = verify(cx, common, Relations.after_swap(), "to_legacy")
    if not result.ok:
        raise Refused("the legacy table does not have every row of the new one, so a rollback "
                      "would lose writes: " + result.message().split(":")[0]
                      + ". Copy the missing rows into v1_hub_work_allocations_legacy (see "
                        "hub_convert.refused_rows), then run rollback again")
    sql = _sql()
    new, legacy = _ident("public", TABLE), _ident("public", LEGACY_NAME)
    timing = {}

    def once():
        with cx.tx() as cur:
            asked = time.monotonic()
            cur.execute(sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(new, legacy))
            timing["locked"] = time.monotonic()
            timing["waited_ms"] = int(round((timing["locked"] - asked) * 1000))
            cur.execute("SELECT count(*) FROM hub_convert.refused_rows WHERE direction = 'to_legacy'")
            if cur.fetchone()[0]:
                raise Refused("writes were refused by the legacy table since the check; run "
                              "rollback again once they are copied over")
            cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_ident(BACK_TRIGGER), new))
            cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA hub_convert").format(new))
            for other in state.get("moved_tables") or []:
                cur.execute(sql.SQL("ALTER TABLE {} SET SCHEMA hub_convert").format(
                    _ident("public", other)))
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(legacy, _ident(TABLE)))
            for original, renamed in (state.get("renamed_indexes") or {}).items():
                cur.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                    _ident("public", renamed), _ident(original)))
            cur.execute("DELETE FROM public.hub_schema_migrations WHERE version = %s",
                        (MIGRATION_0001,))
            cur.execute("UPDATE hub_convert.state SET phase = 'preparing', swapped_at = NULL, "
                        "verified_at = NULL, updated_at = now()")
        timing["held_ms"] = _ms(timing["locked"])
    cx.retry_on_lock("swap_back", once)
    cx.changed = True
    cx.log.line("swap_back", lock_held_ms=timing["held_ms"], lock_waited_ms=timing["waited_ms"],
                rows=result.rows, table=f"public.{TABLE}", migration="0001 record removed",
                outcome=OK)


def drop_scaffold(cx: Conversion) -> None:
    """Remove what prepare made: the mirror, the new table and its partitions, hub_convert."""
    sql = _sql()

    def once():
        with cx.tx() as cur:
            cur.execute("SELECT to_regclass('public.v1_hub_work_allocations') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON public.v1_hub_work_allocations")
                            .format(_ident(FORWARD_TRIGGER)))
            cur.execute("SELECT count(*) FROM pg_catalog.pg_inherits "
                        "WHERE inhparent = to_regclass('hub_convert.v1_hub_work_allocations')")
            parts = cur.fetchone()[0]
            cur.execute("DROP TABLE IF EXISTS hub_convert.v1_hub_work_allocations")
            cur.execute("DROP SCHEMA IF EXISTS hub_convert CASCADE")
            return parts
    parts = cx.retry_on_lock("drop", once)
    cx.changed = True
    cx.log.line("drop", dropped=f"schema {SCHEMA}, the new table and {parts} partitions, "
                f"trigger {FORWARD_TRIGGER}", table=f"public.{TABLE} (the legacy table)",
                outcome=OK)


# --------------------------------------------------------------------------- finalize, finish

def _migration_recorded(cur, version: int) -> bool:
    cur.execute("SELECT EXISTS (SELECT FROM public.hub_schema_migrations WHERE version = %s)",
                (version,))
    return cur.fetchone()[0]


def backup_gate(cx: Conversion, state: dict, dump: str | None, stanza: str,
                read_info=None) -> None:
    """Refused unless a copy of the database taken after the swap exists (convert_backup)."""
    from hubctl import backup, convert_backup as gate
    swapped_at = gate.parse_time(state["swapped_at"])
    if dump:
        problem = gate.dump_problem(dump, swapped_at)
        if problem:
            raise Refused(gate.refusal(swapped_at, problem))
        cx.log.line("backup_gate", dump=dump, bytes=os.path.getsize(dump), outcome=OK)
        return
    try:
        info = (read_info or backup.read_info)(stanza)
    except (backup.PgBackRestError, OSError) as exc:
        raise Refused(gate.refusal(swapped_at, f"pgBackRest could not be asked ({exc})")) from None
    newest = gate.backup_after(info, swapped_at)
    if newest is None:
        raise Refused(gate.refusal(swapped_at, f"pgBackRest's stanza {stanza} has none"))
    cx.log.line("backup_gate", backup=newest.get("label"),
                repo=(newest.get("database") or {}).get("repo-key"), outcome=OK)


def finalize(cx: Conversion, stage: str, state: dict, dump: str | None = None,
             stanza: str = "hub") -> None:
    sql = _sql()
    if stage == "swapped":
        backup_gate(cx, state, dump, stanza)
        new, legacy = _ident("public", TABLE), _ident("public", LEGACY_NAME)
        timing = {}

        def once():
            with cx.tx() as cur:
                asked = time.monotonic()
                cur.execute(sql.SQL("LOCK TABLE {}, {} IN ACCESS EXCLUSIVE MODE").format(new, legacy))
                timing["locked"] = time.monotonic()
                cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}").format(legacy))
                timing["rows"] = cur.fetchone()[0]
                cur.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(_ident(BACK_TRIGGER), new))
                cur.execute(sql.SQL("DROP TABLE {}").format(legacy))
                cur.execute("UPDATE hub_convert.state SET phase = 'finalizing', updated_at = now()")
                timing["waited_ms"] = int(round((timing["locked"] - asked) * 1000))
            timing["held_ms"] = _ms(timing["locked"])
        cx.retry_on_lock("finalize", once)
        cx.changed = True
        cx.log.line("finalize", dropped=f"public.{LEGACY_NAME} ({timing['rows']} rows), trigger "
                    f"{BACK_TRIGGER}", lock_held_ms=timing["held_ms"],
                    lock_waited_ms=timing["waited_ms"], outcome=OK)
    with cx.tx() as cur:
        done_0004 = _migration_recorded(cur, MIGRATION_0004)
        today = cx.today(cur)
    if done_0004:
        cx.log.line("recut", outcome=OK, note="migration 0004 is applied already")
        return
    # pg_partman's create_parent() makes its default partition only when it made at least one
    # month: leave the last month of its window (today + 4) for it to make.
    recut(cx, add_months(today, AHEAD - 1), hole=add_months(today, AHEAD),
          major=state["partman_major"])
    cx.log.line("next", outcome=OK,
                note="apply migrations 0002+ (the hub_schema role), then hubctl convert finish")


def finish(cx: Conversion) -> None:
    sql = _sql()
    with cx.tx() as cur:
        if not _migration_recorded(cur, MIGRATION_0004):
            raise Refused("migration 0004 (pg_partman registration) is not applied yet: apply "
                          "the hub_schema role first (the playbook's finalize does)")
        parts = cx.partitions(cur, ("public", TABLE))
    if not any(bound == "DEFAULT" for _, bound in parts):
        raise Refused("public.v1_hub_work_allocations has no default partition after migration "
                      "0004; look at partman.part_config before going on")
    new = _ident("public", TABLE)
    moved = {}

    def once():
        with cx.tx() as cur:
            cur.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(new))
            attached = {name for name, _ in cx.partitions(cur, ("public", TABLE))}
            cols = [c.name for c in cx.columns_of(cur, ("public", TABLE))]
            collist = sql.SQL(", ").join(sql.Identifier(c) for c in cols)
            for name in (LOWER, UPPER, HOLE):
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (db.qualified("public", name),))
                if not cur.fetchone()[0]:
                    continue
                if name in attached:
                    cur.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                        new, _ident("public", name)))
                cur.execute(sql.SQL("INSERT INTO {} ({c}) SELECT {c} FROM {}").format(
                    new, _ident("public", name), c=collist))
                moved[name] = cur.rowcount
                cur.execute(sql.SQL("DROP TABLE {}").format(_ident("public", name)))
            cur.execute("DROP SCHEMA IF EXISTS hub_convert CASCADE")
    cx.retry_on_lock("finish", once)
    cx.changed = True
    cx.log.line("finish", rows_moved=sum(moved.values()),
                dropped=[f"public.{n}" for n in moved] + [f"schema {SCHEMA}"], outcome=OK)


# --------------------------------------------------------------------------- status

def status(cx: Conversion, stage: str, state: dict | None, as_json: bool) -> None:
    info = {"stage": stage}
    if state:
        info.update({k: state.get(k) for k in (
            "phase", "copied_block", "copy_end_block", "copied_rows", "verified_at",
            "verified_rows", "swapped_at", "lock_ms", "moved_tables", "renamed_indexes")})
    if stage in ("preparing", "prepared", "swapped", "finalizing"):
        with cx.tx() as cur:
            cur.execute("SELECT direction, count(*) FROM hub_convert.refused_rows GROUP BY 1")
            info["refused_rows"] = dict(cur.fetchall())
            cur.execute("SELECT count(*) FROM hub_convert.pending_deletes")
            info["pending_deletes"] = cur.fetchone()[0]
    if as_json:
        print(json.dumps(info, default=str, sort_keys=True), flush=True)
    else:
        cx.log.line("status", **{k: (json.dumps(v, default=str) if isinstance(v, (dict, list)) else v)
                                 for k, v in info.items()})


# --------------------------------------------------------------------------- command line

def add_arguments(p) -> None:
    p.add_argument("phase", choices=PHASES,
                   help="check | prepare | verify | swap | rollback | finalize | finish | status")
    p.add_argument("--json", action="store_true", help="status: print JSON for machines")
    p.add_argument("--stanza", default="hub",
                   help="finalize: the pgBackRest stanza whose backups it looks at (default hub)")
    p.add_argument("--dump", metavar="PATH",
                   help="finalize: a pg_dump written after the swap, instead of a pgBackRest "
                        "backup, as the copy that must exist before the legacy table goes")


def run(args, cfg, today: _dt.date, connect=db.connect) -> int:
    """One phase, under the hubctl lock (no run record: hub_job_runs may not exist yet)."""
    log = Logger("convert")
    started = time.monotonic()
    lock = None
    if args.phase != "status":
        lock = JobLock(cfg.jobs.lock_dir)
        try:
            if not lock.acquire("convert"):
                log.line("lock", path=lock.path, holder=lock.holder() or None, outcome="busy")
                return EXIT_BUSY
        except OSError as exc:
            log.line("lock", path=lock.path, outcome=FAILED, error=str(exc))
            return EXIT_FAILED
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    conn = None
    try:
        conn = connect(cfg, "convert", maintenance=True)
        cx = Conversion(conn, log)
        stage, state = cx.situation()
        decision = plan_phase(args.phase, stage)
        if args.phase != "status":
            log.line("start", phase=args.phase, stage=stage,
                     **({"dry_run": True} if args.dry_run else {}), outcome=OK)
        if decision is not None:
            kind, why = decision
            log.line("end", phase=args.phase, stage=stage, changed=False,
                     duration_ms=_ms(started), outcome=OK if kind == "noop" else "refused",
                     reason=why)
            return EXIT_OK if kind == "noop" else EXIT_FAILED
        if args.dry_run and args.phase != "status":
            log.line("end", phase=args.phase, stage=stage, outcome="dry-run",
                     note=f"would run {args.phase}")
            return EXIT_OK
        if args.phase == "check":
            check_phase(cx, state)
        elif args.phase == "prepare":
            prepare(cx, state)
        elif args.phase == "verify":
            verify_phase(cx, stage, state)
        elif args.phase == "swap":
            swap(cx, state)
        elif args.phase == "rollback":
            rollback(cx, stage, state)
        elif args.phase == "finalize":
            finalize(cx, stage, state, dump=args.dump, stanza=args.stanza)
        elif args.phase == "finish":
            finish(cx)
        else:
            status(cx, stage, state, args.json)
            return EXIT_OK
        after, _ = cx.situation()
        log.line("end", phase=args.phase, stage=after, changed=cx.changed,
                 duration_ms=_ms(started), outcome=OK)
        return EXIT_OK
    except Refused as exc:
        lines = str(exc).splitlines()
        log.line("end", phase=args.phase, duration_ms=_ms(started), outcome="refused",
                 reason=lines[0])
        for line in lines[1:]:
            log.line("reason", detail=line.strip(" -"))
        return EXIT_FAILED
    except BaseException as exc:  # every way out is logged
        error, sqlstate = db.describe_error(exc)
        log.line("end", phase=args.phase, duration_ms=_ms(started), outcome=FAILED,
                 error=error, sqlstate=sqlstate)
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_FAILED
        if not isinstance(exc, (Terminated, OSError)) and not db.is_db_error(exc):
            import traceback
            traceback.print_exc()
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
        if lock is not None:
            lock.release()


def _on_sigterm(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


def _ms(started: float) -> int:
    return int(round((time.monotonic() - started) * 1000))
