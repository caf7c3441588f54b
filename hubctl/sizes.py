"""The hub's sizes from the catalogue: what `hubctl metrics` reports every minute and what the
daily job's capacity snapshot records (hubctl/capacity.py).

A partitioned parent itself reports 0 bytes, so each table's size is the sum over its
partitions (pg_total_relation_size: heap, TOAST and indexes). Rows are the planner's estimate
(pg_class.reltuples), never count(*) over a big table; cold rows and bytes come from the
archive ledger, which recorded them exactly when each month was exported.
"""

from __future__ import annotations

import dataclasses

from hubctl import db
from hubctl.partitions import live_tables

TIERS = ("live", "archive")

SIZES_SQL = """
    SELECT p.relname, count(c.oid),
           coalesce(sum(pg_catalog.pg_total_relation_size(c.oid)), 0),
           coalesce(sum(pg_catalog.pg_indexes_size(c.oid)), 0),
           coalesce(sum(greatest(c.reltuples, 0)), 0)
    FROM pg_catalog.pg_class p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.relnamespace
    LEFT JOIN pg_catalog.pg_inherits i ON i.inhparent = p.oid
    LEFT JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
    WHERE n.nspname = %s AND p.relname = ANY(%s)
    GROUP BY p.relname"""
LEDGER_SQL = """
    SELECT parent_table, state, count(*), coalesce(sum(row_count), 0),
           coalesce(sum(cold_bytes), 0)
    FROM public.hub_archived_partitions GROUP BY parent_table, state"""


@dataclasses.dataclass(frozen=True)
class TierSize:
    """One table's live or archive tier, summed over its partitions."""
    table: str
    tier: str
    partitions: int
    bytes: int
    index_bytes: int
    rows: int


@dataclasses.dataclass(frozen=True)
class LedgerState:
    """The archive ledger's months of one table in one state (live, archived, cold)."""
    table: str
    state: str
    months: int
    rows: int
    cold_bytes: int


def read_tables(cur):
    """(the live tables, their TierSize list): a tier whose table does not exist is left out."""
    _version, _major, partman_schema = db.partman_info(cur)
    tables = live_tables(cur, partman_schema)
    by_schema: dict[str, list[str]] = {}
    for t in tables:
        by_schema.setdefault(t.schema, []).extend([t.name, t.name + "_archive"])
    found = {}
    for schema, rels in by_schema.items():
        cur.execute(SIZES_SQL, (schema, rels))
        for rel, parts, total, indexes, rows in cur.fetchall():
            found[(schema, rel)] = (int(parts), int(total), int(indexes), int(rows))
    sizes = []
    for t in tables:
        for tier, rel in (("live", t.name), ("archive", t.name + "_archive")):
            if (t.schema, rel) in found:
                sizes.append(TierSize(t.name, tier, *found[(t.schema, rel)]))
    return tables, sizes


def read_ledger(cur) -> list[LedgerState]:
    cur.execute(LEDGER_SQL)
    return [LedgerState(table, state, int(months), int(rows), int(cold))
            for table, state, months, rows, cold in cur.fetchall()]
