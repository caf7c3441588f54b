#!/usr/bin/python3
"""Verify a restored copy of the hub's database; print one JSON document on stdout.

Run on the drill host as postgres (peer authentication on the local socket), by the dr_drill
role, with its input as JSON on stdin (never on the command line, since it carries the login
roles' passwords):

    {"database": "hub", "port": 5432, "months_ahead": 3, "today": "",
     "logins": {"hub_app": "<password>", ...},
     "rpo_reference": {"kind": "hub marker", "at": "2026-11-27 03:40:00+00"},
     "archive_end": "000000010000000A0000004F"}

("archive_end", repo2's newest archived WAL segment when the drill read it, is given for a
restore to the newest point only: a targeted restore stops before it on purpose.)

With {"mode": "cold", "cold": {"dir": DIR, "table": T, "month": "YYYY-MM-01"}} it checks one
cold month instead, from the files the role fetched from the off-site store into DIR: each
file's sha256 against the copy's ledger, then the month's file and its supplements loaded into a
TEMP table, whose count and checksum must be the ledger's. zstd must be installed.

Each check is {"name", "ok", "detail"}; "ok" is false only for a finding that makes the copy
unfit. The script exits 0 whenever it could print its report (the role judges it), 1 if it
could not even connect. Only Debian's python3 and python3-psycopg2 are needed. It never prints
a password.

The archive ledger's checksum is hubctl's (hubctl/archive.py): the sum of the first 60 bits of
md5 of each row's text, the row taken as ROW(checksum_columns), the columns the ledger names
for the month (the whole row on a copy from before migration 0010), over the month's rows, in
the server's TimeZone and DateStyle (the drill host is built with the hub's settings).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

import psycopg2
from psycopg2 import sql



def checksum_sql(columns):
    """hubctl's checksum over ROW(columns) of alias t; None: the whole row (before 0010)."""
    row = (sql.SQL("t") if not columns else sql.SQL("ROW({})").format(
        sql.SQL(", ").join(sql.Identifier("t", c) for c in columns)))
    return sql.SQL("coalesce(sum(('x' || substr(md5({}::text), 1, 15))::bit(60)::bigint), 0)"
                   ).format(row)

BOUND_RE = re.compile(r"^FOR VALUES FROM \('([0-9]{4}-[0-9]{2}-[0-9]{2})[^']*'\) "
                      r"TO \('([0-9]{4}-[0-9]{2}-[0-9]{2})[^']*'\)$")
FINDINGS_SHOWN = 20


class Report:
    def __init__(self):
        self.checks = []
        self.facts = {}

    def check(self, name, ok, detail, **extra):
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail, **extra})

    def as_dict(self):
        return {"ok": all(c["ok"] for c in self.checks), "checks": self.checks, **self.facts}


def q(cur, query, args=None):
    cur.execute(query, args)
    return cur.fetchall()


def one(cur, query, args=None):
    cur.execute(query, args)
    return cur.fetchone()


def split_name(name):
    schema, dot, rel = name.partition(".")
    return (schema, rel) if dot else ("public", name)


def parse_bound(expr):
    m = BOUND_RE.match((expr or "").strip())
    if not m:
        return None
    return _dt.date.fromisoformat(m.group(1)), _dt.date.fromisoformat(m.group(2))


def add_months(day, n):
    y, m = divmod(day.month - 1 + n, 12)
    return _dt.date(day.year + y, m + 1, 1)


def partitions(cur, schema, name):
    """[(name, bound expression)] of schema.name's partitions."""
    return q(cur, """
        SELECT c.relname, pg_catalog.pg_get_expr(c.relpartbound, c.oid)
        FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname""", (f"{schema}.{name}",))


def live_tables(cur):
    """[(schema, name, control)] from pg_partman's part_config."""
    row = one(cur, """SELECT n.nspname FROM pg_catalog.pg_extension e
                      JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                      WHERE e.extname = 'pg_partman'""")
    if row is None:
        return None
    rows = q(cur, sql.SQL("SELECT parent_table, control FROM {}.part_config ORDER BY 1")
             .format(sql.Identifier(row[0])))
    return [(*split_name(parent), control) for parent, control in rows]


def lsn_bytes(lsn):
    """'16/B374D848' -> its byte position."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def segment_position(name, segment_size):
    """A WAL file name -> (timeline, segment number), for comparing positions."""
    per_id = 0x100000000 // segment_size
    return int(name[0:8], 16), int(name[8:16], 16) * per_id + int(name[16:24], 16)


def segment_name(timeline, number, segment_size):
    per_id = 0x100000000 // segment_size
    return f"{timeline:08X}{number // per_id:08X}{number % per_id:08X}"


def replay_end(lsn, archive_end, segment_size):
    """(number of the segment holding the last replayed byte, whether that reaches archive_end).

    The history file's switchpoint is where the new timeline begins: after a segment that ends
    with a switch record (archive_timeout's) it is the start of the next segment, which replay
    never read; the last byte replayed is the one before it. Segment numbers continue across
    timelines, so they are compared alone."""
    last = (lsn_bytes(lsn) - 1) // segment_size
    return last, segment_position(archive_end, segment_size)[1] <= last


def recovery_end(history):
    """The last line of a timeline history file: (parent timeline, LSN where this one began)."""
    lines = [line.split() for line in history.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines or len(lines[-1]) < 2:
        return None
    return int(lines[-1][0]), lines[-1][1]


# --------------------------------------------------------------------------- the checks

def check_server(cur, rep):
    (in_recovery, version, archive_mode, archive_command, timeline, replayed, size,
     system_id) = one(cur, """
        SELECT pg_is_in_recovery(), current_setting('server_version'),
               current_setting('archive_mode'), current_setting('archive_command'),
               (pg_control_checkpoint()).timeline_id, pg_last_xact_replay_timestamp()::text,
               pg_size_pretty(pg_database_size(current_database())),
               (pg_control_system()).system_identifier::text""")
    rep.facts["server"] = {"version": version, "timeline": timeline, "database_size": size,
                           "system_identifier": system_id, "last_replayed_commit": replayed,
                           "archive_mode": archive_mode, "archive_command": archive_command}
    rep.check("archive_mode is off", archive_mode == "off",
              f"archive_mode = {archive_mode}: the copy "
              + ("never archives into the hub's repositories" if archive_mode == "off" else
                 "COULD ARCHIVE INTO THE HUB'S REPOSITORIES; stop it now"))
    return in_recovery


def check_writable(conn, rep, in_recovery):
    if in_recovery:
        rep.check("writable", False, "the server is still in recovery")
        return
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE dr_drill_write (id int)")
        cur.execute("INSERT INTO dr_drill_write VALUES (1)")
        cur.execute("SELECT txid_current()")
        xid = cur.fetchone()[0]
    conn.commit()
    rep.check("writable", True, f"promoted; a write committed (transaction {xid})")


def check_amcheck(rep, version_num, database, port):
    binary = f"/usr/lib/postgresql/{version_num // 10000}/bin/pg_amcheck"
    argv = [binary, "--install-missing", f"--port={port}", f"--database={database}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        rep.check("pg_amcheck", False, f"cannot run {binary}: {exc}")
        return
    findings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    ok = proc.returncode == 0 and not findings
    rep.check("pg_amcheck", ok,
              f"{' '.join(argv[1:])}: exit {proc.returncode}, {len(findings)} finding(s)"
              + ("" if ok else ": " + " | ".join(findings[:FINDINGS_SHOWN])),
              findings=len(findings))


def check_ledger(cur, rep, tables):
    """Every archived month still in the database: its count and checksum now, against the
    ledger's (read back after the move, verified_at set)."""
    controls = {}
    for schema, name, control in tables or []:
        controls[name] = (schema, control)
        controls[f"{schema}.{name}"] = (schema, control)
    named = one(cur, "SELECT count(*) FROM pg_catalog.pg_attribute WHERE attrelid = "
                     "'public.hub_archived_partitions'::regclass AND attname = 'checksum_columns' "
                     "AND NOT attisdropped")[0]
    rows = q(cur, """
        SELECT parent_table, month, partition_name, row_count, checksum, state,
               verified_at IS NOT NULL, {}
        FROM public.hub_archived_partitions ORDER BY parent_table, month""".format(
        "checksum_columns" if named else "NULL::text[]"))
    checked, bad, unverified, cold = 0, [], [], 0
    for parent, month, part, count, checksum, state, verified, columns in rows:
        if state == "cold":
            cold += 1
            continue
        if state != "archived":
            continue
        if parent not in controls:
            bad.append(f"{parent} {month}: not in partman.part_config")
            continue
        schema, control = controls[parent]
        if one(cur, "SELECT to_regclass(%s)", (f"{schema}.{part}",))[0] is None:
            bad.append(f"{schema}.{part}: missing (ledger: archived, {count} rows)")
            continue
        now_count, now_sum = one(cur, sql.SQL(
            "SELECT count(*), {sum} FROM ONLY {rel} AS t "
            "WHERE {col} >= %s AND {col} < %s").format(
                sum=checksum_sql(columns), rel=sql.Identifier(schema, part),
                col=sql.Identifier(control)),
            (month, add_months(month, 1)))
        same = int(now_count) == int(count) and str(now_sum) == str(checksum)
        if not verified:
            if not same:
                unverified.append(f"{schema}.{part}")
            continue
        checked += 1
        if not same:
            bad.append(f"{schema}.{part}: {now_count} rows, checksum {now_sum}; "
                       f"ledger {count} rows, checksum {checksum}")
    # The cold months and their copies (the second, off-site one from migration 0012 on).
    listed = [r[0] for r in q(cur, "SELECT to_jsonb(l) FROM public.hub_archived_partitions l "
                                   "WHERE state = 'cold' ORDER BY parent_table, month")]
    rep.facts["cold_months"] = [
        {"table": r["parent_table"], "month": str(r["month"])[:7], "rows": r["row_count"],
         "file": os.path.basename(r.get("cold_path") or ""),
         "supplements": len(r.get("cold_supplements") or []),
         "offsite_verified_at": r.get("offsite_verified_at")} for r in listed]
    offsite = sum(1 for r in rep.facts["cold_months"] if r["offsite_verified_at"])
    detail = (f"{checked} archived month(s) equal to the ledger (count and checksum)"
              f"; {cold} cold month(s) in files outside the backups ({offsite} with a verified "
              "off-site copy; the drill restores one from it)")
    if unverified:
        detail += (f"; {len(unverified)} not yet read back by the archive job, differing "
                   f"(not a finding): {', '.join(unverified)}")
    if bad:
        detail += "; MISMATCH: " + " | ".join(bad[:FINDINGS_SHOWN])
    rep.check("archive ledger", not bad, detail, months=checked)


COLD_CHECK = "cold month from the off-site copy"
# The CA of the drill host's server certificate (the postgresql role writes it): each role logs
# in the way the bundle's clients do, verifying the server's name with SCRAM bound to TLS.
SERVER_CA = "/etc/postgresql/hub-server-ca.crt"


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_zstd(cur, path, relation, columns):
    """COPY a zstd-compressed COPY text file into relation (columns in the file's order)."""
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        relation, sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(["zstd", "-d", "-q", "-c", "--", path], stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL)
        try:
            cur.copy_expert(copy.as_string(cur.connection), proc.stdout)
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if rc != 0:
            err.seek(0)
            raise RuntimeError(f"zstd cannot read {path}: {err.read().decode(errors='replace')}")


def check_cold_month(cur, rep, tables, cold):
    """One cold month, from the files fetched from the off-site store: the files are the
    ledger's (sha256), and together they hold the ledger's count and checksum."""
    directory, table, month = cold["dir"], cold["table"], cold["month"]
    row = one(cur, "SELECT to_jsonb(l) FROM public.hub_archived_partitions l "
                   "WHERE parent_table = %s AND month = %s AND state = 'cold'", (table, month))
    if row is None:
        rep.check(COLD_CHECK, False, f"{table} {month[:7]} is not cold in the copy's ledger")
        return
    led = row[0]
    schema = next((sc for sc, name, _ in tables or [] if name == table), None)
    if schema is None:
        rep.check(COLD_CHECK, False, f"{table} is not in partman.part_config")
        return
    files = [(os.path.basename(led["cold_path"]), led["cold_sha256"])]
    files += [(s["file"], s["sha256"]) for s in led.get("cold_supplements") or []]
    bad = []
    for name, sha in files:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            bad.append(f"{name}: not fetched")
        elif sha256_of(path) != sha:
            bad.append(f"{name}: sha256 {sha256_of(path)}, the ledger's {sha}")
    if bad:
        rep.check(COLD_CHECK, False, "; ".join(bad), table=table, month=month[:7])
        return
    first = None
    cur.execute(sql.SQL("CREATE TEMP TABLE hub_drill_cold (LIKE {}) ON COMMIT DROP").format(
        sql.Identifier(schema, table + "_archive")))
    for name, _ in files:
        stem = name[:-len(".copy.zst")]
        with open(os.path.join(directory, stem + ".manifest.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
        if first is None:
            first = manifest
            # The row text (and so the checksum) follows the export's TimeZone and DateStyle.
            cur.execute("SELECT set_config('TimeZone', %s, true), set_config('DateStyle', %s, true)",
                        (manifest["timezone"], manifest["datestyle"]))
        load_zstd(cur, os.path.join(directory, name), sql.Identifier("hub_drill_cold"),
                  [c["name"] for c in manifest["columns"]])
    count, checksum = one(cur, sql.SQL("SELECT count(*), {} FROM hub_drill_cold AS t").format(
        checksum_sql(led.get("checksum_columns"))))
    same = int(count) == int(led["row_count"]) and str(checksum) == str(led["checksum"])
    rep.check(COLD_CHECK, same,
              f"{table} {month[:7]} from {len(files)} file(s) of the off-site store: {count} rows, "
              f"checksum {checksum}; ledger {led['row_count']} rows, checksum {led['checksum']}",
              table=table, month=month[:7], files=len(files), rows=int(count))


def check_manifest(cur, rep):
    """The live partitions against the newest manifest in the copy: at least as many rows."""
    row = one(cur, "SELECT max(taken_at), max(taken_at)::text FROM public.hub_backup_manifests")
    if row[0] is None:
        rep.check("partitions vs backup manifest", False,
                  "hub_backup_manifests is empty: no backup job (full, incr, offsite) has run "
                  "since migration 0008; run one on the hub and drill again")
        return
    rep.facts["manifest_taken_at"] = row[1]
    ledger = {name: state for name, state in q(
        cur, "SELECT partition_name, state FROM public.hub_archived_partitions")}
    short, checked, notes = [], 0, []
    for relation, rows in q(cur, "SELECT relation, rows FROM public.hub_backup_manifests "
                                 "WHERE taken_at = %s ORDER BY relation", (row[0],)):
        schema, name = split_name(relation)
        if one(cur, "SELECT to_regclass(%s)", (relation,))[0] is None:
            if ledger.get(name) == "cold":
                notes.append(f"{relation} exported to a cold file since")
            else:
                short.append(f"{relation}: missing ({rows} rows in the manifest)")
            continue
        now = one(cur, sql.SQL("SELECT count(*) FROM ONLY {}").format(
            sql.Identifier(schema, name)))[0]
        checked += 1
        if now >= rows:
            continue
        if name.endswith("_default"):
            # The archive job moves late rows out of a default partition.
            notes.append(f"{relation}: {now} < {rows} (late rows moved to the archive)")
        else:
            short.append(f"{relation}: {now} rows, fewer than the manifest's {rows}")
    detail = f"{checked} partition(s) hold at least the rows of the manifest of {row[1]}"
    if notes:
        detail += "; " + "; ".join(notes)
    if short:
        detail += "; SHORT: " + " | ".join(short[:FINDINGS_SHOWN])
    rep.check("partitions vs backup manifest", not short, detail, partitions=checked)


def check_logins(rep, logins, database, port):
    bad, good = [], []
    for role, password in sorted(logins.items()):
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, dbname=database, user=role,
                                    password=password, sslmode="verify-full",
                                    sslrootcert=SERVER_CA, channel_binding="require",
                                    connect_timeout=10, application_name="dr-drill")
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT current_user, ssl FROM pg_stat_ssl "
                                "WHERE pid = pg_backend_pid()")
                    user, ssl = cur.fetchone()
                if user != role or not ssl:
                    bad.append(f"{role}: logged in as {user}, ssl={ssl}")
                else:
                    good.append(role)
            finally:
                conn.close()
        except psycopg2.Error as exc:
            bad.append(f"{role}: {' '.join(str(exc).split())[:200]}")
    rep.check("roles log in", not bad and bool(good),
              f"over TLS with their vault passwords: {', '.join(good) or 'none'}"
              + (f"; FAILED: {' | '.join(bad)}" if bad else ""))


def check_ahead(cur, rep, tables, months_ahead, today=None):
    today = _dt.date.fromisoformat(today) if today else one(cur, "SELECT current_date")[0]
    wanted = add_months(today.replace(day=1), months_ahead)
    missing = []
    for schema, name, _ in tables:
        bounds = [parse_bound(expr) for _, expr in partitions(cur, schema, name)]
        if not any(b and b[0] <= wanted < b[1] for b in bounds):
            missing.append(f"{schema}.{name}")
    rep.check("partitions ahead", not missing,
              f"the month {wanted:%Y-%m} (today {today} + {months_ahead} months) has a partition "
              f"in {len(tables) - len(missing)} of {len(tables)} live tables"
              + (f"; MISSING in {', '.join(missing)}" if missing else ""))


def check_archive_queryable(cur, rep, tables):
    found, bad = [], []
    for schema, name, control in tables:
        arch = f"{name}_archive"
        if one(cur, "SELECT to_regclass(%s)", (f"{schema}.{arch}",))[0] is None:
            bad.append(f"{schema}.{arch} missing")
            continue
        count, first, last = one(cur, sql.SQL("SELECT count(*), min({c})::date, max({c})::date "
                                              "FROM {t}").format(
            c=sql.Identifier(control), t=sql.Identifier(schema, arch)))
        found.append(f"{arch} {count} rows" + (f" ({first}..{last})" if count else ""))
    rep.check("archive queryable", not bad and bool(found),
              "; ".join(found + [f"FAILED: {b}" for b in bad]))


def check_wal_end(cur, rep, archive_end):
    """A restore to the newest point must replay every WAL segment repo2 held when the drill
    read its archive. PostgreSQL ends recovery at the first segment it cannot fetch and promotes
    all the same: a segment missing from the archive loses every later commit, silently."""
    timeline, segment_size = one(cur, """
        SELECT (pg_control_checkpoint()).timeline_id,
               (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size')""")
    history = one(cur, "SELECT pg_catalog.pg_read_file(%s, 0, 65536, true)",
                  (f"pg_wal/{timeline:08X}.history",))[0]
    end = recovery_end(history or "")
    name = "WAL replayed to the end of repo2's archive"
    if end is None:
        rep.check(name, False, f"timeline {timeline} has no history file in pg_wal: the copy was "
                  "not promoted from archive recovery, so where its replay ended is unknown")
        return
    # The timeline recovery followed (the new one's parent) names the last segment it read.
    parent, lsn = end
    number, reached = replay_end(lsn, archive_end, segment_size)
    last = segment_name(parent, number, segment_size)
    rep.facts["recovery_end"] = {"timeline": parent, "lsn": lsn, "segment": last,
                                 "archive_end": archive_end}
    if reached:
        rep.check(name, True, f"replay read through segment {last} and ended at {lsn}; repo2's "
                  f"archive ended at {archive_end} when the drill read it")
    else:
        rep.check(name, False, f"replay ENDED EARLY: it read through segment {last} (ended at {lsn}), "
                  f"but repo2's archive holds WAL up to {archive_end}: the segment after {last} is "
                  "missing or unreadable (the PostgreSQL log names it), and every commit after "
                  f"{lsn} is missing from this copy")


def check_markers(cur, rep, reference):
    count, last_id, last_at, last_text = one(cur, """
        SELECT count(*), max(id), max(written_at), max(written_at)::text
        FROM public.hub_markers""")
    rep.facts["markers"] = {"restored": count, "last_id": last_id, "last_written_at": last_text}
    reference = dict(reference or {})
    if not reference.get("at"):
        # A restore point: the copy ends at it; its last replayed commit is the reference.
        reference["at"] = (rep.facts.get("server") or {}).get("last_replayed_commit")
    rep.facts["rpo_reference"] = reference
    rep.facts["rpo_s"] = None
    if last_at is None:
        rep.check("markers", False, "the copy holds no marker: none had been written on the hub "
                  "by the point restored (hubctl marker runs from cron every 5 minutes once "
                  "migration 0008 is applied); the RPO cannot be measured")
        return
    rpo = None
    if reference.get("at"):
        seconds = one(cur, "SELECT extract(epoch FROM %s::timestamptz - %s)::float8",
                      (reference["at"], last_at))[0]
        rpo = max(0.0, round(seconds, 1))
        # Finer, for information: WAL replay is in commit order, so the copy holds every commit
        # up to its last replayed one; only later ones are lost. The budget is judged on markers.
        replayed = (rep.facts.get("server") or {}).get("last_replayed_commit")
        if replayed:
            seconds = one(cur, "SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz)"
                          "::float8", (reference["at"], replayed))[0]
            rep.facts["rpo_replay_s"] = max(0.0, round(seconds, 1))
    rep.facts["rpo_s"] = rpo
    rep.check("markers", True, f"newest restored marker {last_id} written at {last_text}"
              + (f"; {rpo} s before the {reference['kind']} ({reference['at']})"
                 if rpo is not None else ""))


def main():
    params = json.load(sys.stdin)
    database, port = params.get("database", "hub"), int(params.get("port", 5432))
    rep = Report()
    try:
        conn = psycopg2.connect(dbname=database, port=port, application_name="dr-drill")
    except psycopg2.Error as exc:
        print(json.dumps({"ok": False, "error": " ".join(str(exc).split())}))
        return 1
    if params.get("mode") == "cold":
        try:
            with conn.cursor() as cur:
                check_cold_month(cur, rep, live_tables(cur), params["cold"])
        except Exception as exc:  # the finding goes into the report
            rep.check(COLD_CHECK, False, " ".join(str(exc).split())[:500])
        finally:
            conn.rollback()
            conn.close()
        print(json.dumps(rep.as_dict(), default=str))
        return 0
    try:
        with conn.cursor() as cur:
            in_recovery = check_server(cur, rep)
            version_num = int(one(cur, "SHOW server_version_num")[0])
        conn.commit()
        check_writable(conn, rep, in_recovery)
        check_amcheck(rep, version_num, database, port)
        with conn.cursor() as cur:
            tables = live_tables(cur)
            if not tables:
                rep.check("live tables", False, "pg_partman or its part_config is missing")
                tables = []
            steps = [
                ("archive ledger", lambda: check_ledger(cur, rep, tables)),
                ("partitions vs backup manifest", lambda: check_manifest(cur, rep)),
                ("partitions ahead",
                 lambda: check_ahead(cur, rep, tables, int(params.get("months_ahead", 3)),
                                     params.get("today"))),
                ("archive queryable", lambda: check_archive_queryable(cur, rep, tables)),
            ]
            if params.get("archive_end"):
                steps.append(("WAL replayed to the end of repo2's archive",
                              lambda: check_wal_end(cur, rep, params["archive_end"])))
            steps += [
                ("markers", lambda: check_markers(cur, rep, params.get("rpo_reference"))),
            ]
            for name, step in steps:
                try:
                    step()
                    conn.commit()
                except Exception as exc:  # one check's failure must not lose the others
                    conn.rollback()
                    rep.check(name, False, " ".join(str(exc).split())[:500])
        check_logins(rep, params.get("logins") or {}, database, port)
    finally:
        conn.close()
    print(json.dumps(rep.as_dict(), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
