"""`hubctl cold export` and `hubctl cold restore`: archived months to files on the host, and back.

Export (a step of `hubctl daily`, or by hand). A month of an `<table>_archive` table whose whole
range is older than `cold_after_days` (365 by default), and which hub_archived_partitions lists
as 'archived' with its row count and checksum, leaves the database for a file:

1. export: `COPY <partition> (columns) TO STDOUT` (text format) through the `zstd` command into
   a temporary file beside the final one, fsynced;
2. verify: that file is read back: decompressed by `zstd` into a TEMP table of the partition's
   shape, where PostgreSQL computes the row count and the archive's checksum; both must equal
   the ledger's. On a mismatch the step fails and stops here: the partition stays, nothing is
   removed (the temporary file is left for inspection; the next run writes it again);
3. keep: a JSON manifest (columns and types, count, checksum, sha256, size, server version,
   session TimeZone and DateStyle) is written beside it; both are renamed to their final names
   and the directory is fsynced;
4. drop: in one transaction under lock_timeout: the partition is locked against writes and
   counted again (it must still equal the ledger), DETACHed from the archive table and
   DROPped, and the ledger row becomes 'cold' with the file's path, size and sha256.

Each step is safe to interrupt (kill -9 included) and to repeat: until 4 commits, the partition
is untouched. A rerun that finds the final file (a run stopped between 3 and 4) reads it back
and verifies it the same way, and goes on to 4; a file that does not verify is never
overwritten: the step fails and says what to move away.

Late rows (a step of `hubctl daily`, after the export): a row written for a month already cold
lands in the live table's default partition. In one transaction it is deleted from there into
a TEMP table, written through zstd to a supplement file beside the month's
(`<table>_YYYY-MM.late-<UTC time>.copy.zst` with its manifest), read back and compared,
renamed and fsynced, stored off-site, and the ledger row adds its count, checksum and bytes and
lists the file (`cold_supplements`, migration 0011); then the commit. A failure before the
commit leaves the rows in the default partition.

The second copy (hubctl/offsite.py, migration 0012): before a month's drop, its file and manifest
are stored on the off-site host and read back there; the drop records offsite_sha256. Without a
store configured, no month is dropped. Restore takes the off-site copy in place of a local file
that is missing or damaged.

Restore: `hubctl cold restore YYYY-MM [--table NAME]` loads one cold month into a standalone
table `hub_restored.<table>_pYYYY_MM` (LIKE the archive table: same columns, CHECK
constraints and indexes), after checking the sha256 of the month's file and of each supplement
against the ledger and their manifests, and commits only if the rows loaded (the file, then the
supplements) have the ledger's count and checksum. An existing restored
table is never replaced: it must be dropped first.

The checksum is the archive's (archive.py): the sum of the first 60 bits of md5 of each row's
text, the row taken as ROW(checksum_columns), the columns the ledger names for the month. The
file holds every column the partition has when it is exported (a column added after the month
was archived included); the checksum covers the ledger's. The text of a row depends on the
session's TimeZone and DateStyle (timestamptz columns); the manifest records both and restore
computes the checksum under them.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile

from hubctl import __version__, db, offsite
from hubctl.archive import LEDGER, checksum_expr, cutoff, missing_columns, table_columns
from hubctl.dates import add_months, month_label
from hubctl.jobs import DRY_RUN, Job, JobAbort, now_iso
from hubctl.offsite import OffsiteError
from hubctl.partitions import (LiveTable, default_rows_by_month, managed_tables,
                               read_partitions)

# The hub's four live tables; --table accepts these (checked again against part_config).
TABLES = ("v1_hub_work_allocations", "v1_hub_client_activity_logs",
          "v1_hub_proxy_toggle_logs", "v1_hub_work_slots_history")
# The table a restore brings back when none is named: the one questions are asked about.
DEFAULT_RESTORE_TABLE = "v1_hub_work_allocations"
RESTORE_SCHEMA = "hub_restored"

MANIFEST_FORMAT = "hub-cold/1"
# zstd's default level. Measured on a month of one million allocations (157 MB of COPY text,
# docs/performance.md): 49 MB in 1.1 s; levels 6 to 12 save at most 2 % for 2 to 11 times the
# time, level 19 saves 12 % for 200 s. Random UUIDs and timestamps are most of the bytes.
ZSTD_LEVEL = 3
CHECKSUM_SQL = "sum(('x' || substr(md5(ROW(checksum_columns)::text), 1, 15))::bit(60)::bigint)"

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
# Table names become file names: nothing but lower-case letters, digits and underscores.
_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class ColdError(JobAbort):
    """A month could not be exported, verified or restored. Nothing was dropped or replaced."""


# --------------------------------------------------------------------------- pure parts

def parse_month(text: str) -> _dt.date:
    """A strict YYYY-MM month; its first day. ValueError with a readable message."""
    m = _MONTH_RE.match(text or "")
    if not m or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise ValueError(f"invalid month {text!r}: expected YYYY-MM")
    return _dt.date(int(m.group(1)), int(m.group(2)), 1)


def is_eligible(month: _dt.date, today: _dt.date, after_days: int) -> bool:
    """A month goes cold once its end (the 1st of the next month) is after_days old."""
    return add_months(month, 1) <= cutoff(today, after_days)


def eligible_on(month: _dt.date, after_days: int) -> _dt.date:
    """The first day on which a month is cold-eligible."""
    return add_months(month, 1) + _dt.timedelta(days=after_days)


# A ledger row 'archived' whose count and checksum the archive step has not read back yet
# (verified_at NULL: a run stopped between its move and its read-back; the next archive run
# does it). Not exported until then: the file is verified against those figures.
UNVERIFIED = "archived, not read back"


@dataclasses.dataclass(frozen=True)
class ColdPlan:
    export: list        # [(month, partition)]: archived, attached, old enough; oldest first
    unverified: list    # old enough, archived, but not yet read back: next run
    unrecorded: list    # old enough and attached, but not archived in the ledger: left alone
    missing: list       # archived in the ledger, but no partition in the archive table


def plan_cold(ledger: dict, attached: dict, today: _dt.date, after_days: int,
              only: _dt.date | None = None) -> ColdPlan:
    """ledger: {month: state} of one table (UNVERIFIED for an archived month not yet read
    back); attached: {month: partition} of its archive table.

    Only a month with a verified count and checksum ('archived') can be checked against its
    file, so only such months are exported; an old archive partition without one is reported,
    not touched.
    """
    def due(m):
        return (only is None or m == only) and is_eligible(m, today, after_days)
    export = [(m, attached[m]) for m in sorted(attached)
              if due(m) and ledger.get(m) == "archived"]
    unverified = [m for m in sorted(attached) if due(m) and ledger.get(m) == UNVERIFIED]
    unrecorded = [m for m in sorted(attached)
                  if due(m) and ledger.get(m) not in ("archived", UNVERIFIED)]
    missing = [m for m in sorted(ledger)
               if (only is None or m == only) and ledger[m] in ("archived", UNVERIFIED)
               and m not in attached]
    return ColdPlan(export=export, unverified=unverified, unrecorded=unrecorded,
                    missing=missing)


@dataclasses.dataclass(frozen=True)
class ColdPaths:
    dir: str
    data: str
    manifest: str
    data_tmp: str
    manifest_tmp: str


def cold_paths(cold_dir: str, table: str, month: _dt.date) -> ColdPaths:
    """<cold_dir>/<table>/<table>_YYYY-MM.copy.zst and .manifest.json beside it; temporary
    names start with a dot in the same directory (a rename within one file system is atomic)."""
    if not _NAME_RE.match(table):
        raise ValueError(f"table name {table!r} cannot be used in a file name")
    if not os.path.isabs(cold_dir):
        raise ValueError(f"cold_dir {cold_dir!r} is not an absolute path")
    d = os.path.join(os.path.normpath(cold_dir), table)
    base = f"{table}_{month_label(month)}"
    data = os.path.join(d, base + ".copy.zst")
    return ColdPaths(dir=d, data=data, manifest=manifest_path(data),
                     data_tmp=os.path.join(d, "." + base + ".copy.zst.tmp"),
                     manifest_tmp=os.path.join(d, "." + base + ".manifest.json.tmp"))


_STAMP_RE = re.compile(r"^\d{8}T\d{6}Z$")


def supplement_stamp(when: _dt.datetime) -> str:
    """A supplement's name part: its UTC time, 20261207T030012Z."""
    return when.astimezone(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def supplement_paths(cold_path: str, stamp: str) -> ColdPaths:
    """A supplement (late rows) of the month whose file is cold_path, written at `stamp`
    (supplement_stamp): <table>_YYYY-MM.late-<stamp>.copy.zst beside it, with its manifest and
    temporary names. The time makes each name new, so a supplement whose commit did not happen
    (and which the off-site store may hold) is never confused with the one that replaces it."""
    if not _STAMP_RE.match(stamp) or not cold_path.endswith(".copy.zst"):
        raise ValueError(f"no supplement {stamp!r} of {cold_path!r}")
    d, name = os.path.split(cold_path)
    base = f"{name[:-len('.copy.zst')]}.late-{stamp}"
    data = os.path.join(d, base + ".copy.zst")
    return ColdPaths(dir=d, data=data, manifest=manifest_path(data),
                     data_tmp=os.path.join(d, "." + base + ".copy.zst.tmp"),
                     manifest_tmp=os.path.join(d, "." + base + ".manifest.json.tmp"))


def unlisted_supplements(cold_path: str, supplements) -> list:
    """Supplement files (and manifests) of the month beside cold_path that the ledger does not
    list: left by runs whose commit did not happen."""
    d, name = os.path.split(cold_path)
    prefix = name[:-len(".copy.zst")] + ".late-"
    listed = set()
    for sup in supplements:
        listed.add(sup["file"])
        listed.add(os.path.basename(manifest_path(sup["file"])))
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(d, n) for n in names
                  if (n.startswith(prefix) and n not in listed
                      and n.endswith((".copy.zst", ".manifest.json")))
                  or (n.startswith("." + prefix) and n.endswith(".tmp")))


def supplement_totals(supplements) -> tuple[int, int]:
    """(rows, checksum) the supplements add to a month's ledger figures."""
    return (sum(int(s["row_count"]) for s in supplements),
            sum(int(s["checksum"]) for s in supplements))


def manifest_path(data_path: str) -> str:
    """The manifest beside a cold file: <name>.copy.zst -> <name>.manifest.json."""
    stem = data_path[:-len(".copy.zst")] if data_path.endswith(".copy.zst") else data_path
    return stem + ".manifest.json"


def restored_name(table: str, month: _dt.date) -> str:
    """hub_restored's table for a month: v1_hub_work_allocations_p2025_08."""
    return f"{table}_p{month.year:04d}_{month.month:02d}"


def build_manifest(*, table: str, month: _dt.date, partition: str, control: str,
                   columns: list, row_count: int, checksum: int, sha256: str, size: int,
                   server_version: str, timezone: str, datestyle: str, exported_at: str,
                   file_name: str, checksum_columns: list) -> dict:
    """What a person or a later tool needs to read the file without the database."""
    return {
        "format": MANIFEST_FORMAT,
        "table": table,
        "month": month_label(month),
        "range": [month.isoformat(), add_months(month, 1).isoformat()],
        "partition": partition,
        "control": control,
        "file": file_name,
        "content": f"PostgreSQL COPY text format, compressed with zstd -{ZSTD_LEVEL}",
        "columns": [{"name": n, "type": t, "not_null": bool(nn)} for n, t, nn in columns],
        "row_count": int(row_count),
        "checksum": str(checksum),
        "checksum_columns": list(checksum_columns),
        "checksum_sql": CHECKSUM_SQL,
        "timezone": timezone,
        "datestyle": datestyle,
        "sha256": sha256,
        "bytes": int(size),
        "server_version": server_version,
        "exported_at": exported_at,
        "hubctl": __version__,
    }


def manifest_problems(manifest: dict, *, table: str, month: _dt.date, row_count: int,
                      checksum: int, sha256: str | None = None,
                      size: int | None = None, checksum_columns: list | None = None) -> list:
    """How a manifest disagrees with what it should describe (empty if it agrees). A manifest
    written before the ledger named its checksum columns has none to compare."""
    if not isinstance(manifest, dict):
        return ["it is not a JSON object"]
    problems = []
    expected = {"format": MANIFEST_FORMAT, "table": table, "month": month_label(month),
                "row_count": int(row_count), "checksum": str(checksum)}
    if sha256 is not None:
        expected["sha256"] = sha256
    if size is not None:
        expected["bytes"] = int(size)
    if checksum_columns is not None and "checksum_columns" in manifest:
        expected["checksum_columns"] = list(checksum_columns)
    for key, value in expected.items():
        if manifest.get(key) != value:
            problems.append(f"{key} is {manifest.get(key)!r}, expected {value!r}")
    cols = manifest.get("columns")
    if not isinstance(cols, list) or not cols or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) for c in cols):
        problems.append("columns are missing or malformed")
    return problems


def manifest_columns(manifest: dict) -> list:
    return [c["name"] for c in manifest["columns"]]


# --------------------------------------------------------------------------- files

def sha256_of(path: str) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read to its end."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: str) -> None:
    """The table's directory under cold_dir (0750), its entry made durable."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o750, exist_ok=True)
        fsync_dir(os.path.dirname(path))


def write_json(path: str, data: dict) -> None:
    """Write and fsync a new file (an existing one is replaced: only temporary names come here)."""
    text = json.dumps(data, indent=2) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise ColdError(f"cannot read manifest {path}: {exc}") from None


def remove_quietly(*paths: str) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def zstd_command() -> str:
    path = shutil.which("zstd")
    if path is None:
        raise JobAbort("the zstd command is not installed (apt-get install zstd; the "
                       "maintenance role installs it)")
    return path


def _stderr_text(fh) -> str:
    fh.seek(0)
    return " ".join(fh.read().decode("utf-8", "replace").split())[-300:]


# --------------------------------------------------------------------------- database parts

def count_and_checksum(cur, relation, columns) -> tuple[int, int]:
    """Row count and the archive's checksum of a whole relation, rows as ROW(columns)."""
    from psycopg2 import sql
    cur.execute(sql.SQL("SELECT count(*), {checksum} FROM ONLY {rel} AS t").format(
        checksum=checksum_expr(sql, "t", columns), rel=relation))
    count, checksum = cur.fetchone()
    return int(count), int(checksum)


def session_formats(cur) -> tuple[str, str, str]:
    """(server_version, TimeZone, DateStyle) of this session."""
    cur.execute("SELECT current_setting('server_version'), current_setting('TimeZone'), "
                "current_setting('DateStyle')")
    return tuple(cur.fetchone())


@dataclasses.dataclass(frozen=True)
class LedgerRow:
    partition_name: str
    row_count: int
    checksum: int
    state: str
    cold_path: str | None
    cold_bytes: int | None
    cold_sha256: str | None
    verified: bool          # count and checksum read back from the archive (verified_at)
    checksum_columns: tuple = ()    # the columns the checksum covers (migration 0010)
    supplements: tuple = ()         # late rows' files of a cold month, in order (0011)
    offsite_verified: bool = False  # the cold file's off-site copy is verified (0012)


def ledger_row(cur, table: str, month: _dt.date) -> LedgerRow | None:
    from psycopg2 import sql
    cur.execute(sql.SQL("""
        SELECT partition_name, row_count, checksum, state, cold_path, cold_bytes, cold_sha256,
               verified_at IS NOT NULL, checksum_columns, cold_supplements,
               offsite_verified_at IS NOT NULL
        FROM {ledger} WHERE parent_table = %s AND month = %s""").format(
        ledger=sql.Identifier(*LEDGER.split("."))), (table, month))
    r = cur.fetchone()
    if r is None:
        return None
    return LedgerRow(r[0], int(r[1]), int(r[2]), r[3], r[4], r[5], r[6], r[7], tuple(r[8]),
                     tuple(r[9] or ()), bool(r[10]))


def ledger_states(cur, table: str) -> dict:
    """{month: state} of a table's ledger rows; UNVERIFIED for 'archived' not read back."""
    from psycopg2 import sql
    cur.execute(sql.SQL("""
        SELECT month, CASE WHEN state = 'archived' AND verified_at IS NULL THEN %s
                           ELSE state END
        FROM {ledger} WHERE parent_table = %s""").format(
        ledger=sql.Identifier(*LEDGER.split("."))), (UNVERIFIED, table))
    return {r[0]: r[1] for r in cur.fetchall()}


def load_file(cur, zstd: str, path: str, relation, columns, freeze: bool = False) -> None:
    """Decompress a cold file with zstd into relation (COPY FROM STDIN, text format).

    Any failure (zstd cannot read the file, COPY rejects a line) raises ColdError; the caller's
    transaction is then rolled back, leaving nothing loaded.
    """
    from psycopg2 import sql
    copy = sql.SQL("COPY {rel} ({cols}) FROM STDIN{opts}").format(
        rel=relation, cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
        opts=sql.SQL(" WITH (FREEZE)") if freeze else sql.SQL(""))
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([zstd, "-d", "-q", "-c", "--", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=err, close_fds=True)
        db_error = None
        try:
            cur.copy_expert(copy.as_string(cur.connection), proc.stdout)
        except Exception as exc:
            if not db.is_db_error(exc):
                proc.kill()
                raise
            db_error = exc
        finally:
            proc.stdout.close()
            rc = proc.wait()
        if db_error is not None:
            # COPY refused a line (often garbage from a damaged file); zstd may say more.
            note = _stderr_text(err)
            raise ColdError(f"{path} could not be loaded back: "
                            f"{db.describe_error(db_error)[0]}"
                            + (f" (zstd: {note})" if note else ""))
        if rc != 0:
            raise ColdError(f"{path} cannot be decompressed (zstd exit {rc}: "
                            f"{_stderr_text(err) or 'no message'}): the file is damaged")


def write_file(conn, zstd: str, relation, columns, path: str) -> None:
    """COPY relation TO STDOUT through zstd into a new file at path, fsynced (its own
    transaction)."""
    with db.transaction(conn) as cur:
        copy_out(cur, zstd, relation, columns, path)


def copy_out(cur, zstd: str, relation, columns, path: str) -> None:
    """COPY relation TO STDOUT through zstd into a new file at path, fsynced, in the cursor's
    transaction. ColdError if zstd fails; the caller removes the file."""
    from psycopg2 import sql
    copy = sql.SQL("COPY {rel} ({cols}) TO STDOUT").format(
        rel=relation, cols=sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([zstd, "-q", "-c", f"-{ZSTD_LEVEL}", "--check"],
                                    stdin=subprocess.PIPE, stdout=fd, stderr=err, close_fds=True)
            try:
                cur.copy_expert(copy.as_string(cur.connection), proc.stdin)
                proc.stdin.close()
            except BrokenPipeError:
                # zstd stopped reading (a full disk, say): its own message says why.
                rc = proc.wait()
                raise ColdError(f"zstd stopped writing {path} (exit {rc}: "
                                f"{_stderr_text(err) or 'no message'})") from None
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            rc = proc.wait()
            if rc != 0:
                raise ColdError(f"zstd failed writing {path} (exit {rc}: "
                                f"{_stderr_text(err) or 'no message'})")
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_file(conn, zstd: str, path: str, like, columns, expected: tuple[int, int],
                what: str, checksum_columns) -> None:
    """Read the file (its columns: `columns`) back into a TEMP table shaped like `like` and
    compare count and checksum over checksum_columns with expected (the ledger's); ColdError if
    they differ."""
    with db.transaction(conn) as cur:
        check_loaded(cur, zstd, path, like, columns, expected, what, checksum_columns)


def check_loaded(cur, zstd: str, path: str, like, columns, expected: tuple[int, int],
                 what: str, checksum_columns) -> None:
    """verify_file in the cursor's transaction (its TEMP table is dropped at the commit)."""
    from psycopg2 import sql
    cur.execute(sql.SQL("CREATE TEMP TABLE hub_cold_check (LIKE {like}) ON COMMIT DROP")
                .format(like=like))
    tmp = sql.Identifier("hub_cold_check")
    load_file(cur, zstd, path, tmp, columns)
    found = count_and_checksum(cur, tmp, checksum_columns)
    cur.execute("DROP TABLE hub_cold_check")
    if found != tuple(expected):
        raise ColdError(f"{what} {path} does not match the ledger: it holds {found[0]} rows "
                        f"(checksum {found[1]}), the ledger says {expected[0]} "
                        f"(checksum {expected[1]})")


# --------------------------------------------------------------------------- off-site copies

def store_copies(cfg, manifest: str | None, data: str, sha256: str,
                 timeout: float = offsite.TIMEOUT) -> str:
    """The off-site copies of a cold file and its manifest, each read back there; 'stored' or
    'present' (an earlier run stored them). OffsiteError if either is not confirmed."""
    if manifest is not None and os.path.exists(manifest):
        offsite.put(cfg, manifest, sha256_of(manifest)[0], timeout)
    answer = offsite.put(cfg, data, sha256, timeout)
    return answer.split()[0]


# --------------------------------------------------------------------------- export

def run(job: Job) -> None:
    """The daily step: every eligible month of every table, then the late rows of cold months
    (both are tried; the job fails with both reasons if both fail)."""
    failures = []
    for part in (export, supplement_late_rows, copy_missing_offsite):
        try:
            part(job)
        except JobAbort as exc:
            failures.append(str(exc))
    if failures:
        raise JobAbort("; ".join(failures))


def export(job: Job, table: str | None = None, month: _dt.date | None = None) -> None:
    """Export, verify and drop the cold-eligible months (of one table, or one month, if given).

    A month that fails is reported and left as it was; the others still go. The job then
    fails with every month's reason.
    """
    after_days = job.cfg.jobs.cold_after_days
    if month is not None and not is_eligible(month, job.today, after_days):
        raise JobAbort(f"{month_label(month)} is not cold-eligible on {job.today}: a month goes "
                       f"cold once its end is {after_days} days old (cold_after_days), so on "
                       f"{eligible_on(month, after_days)}; nothing done")
    tables = managed_tables(job)[3]
    if table is not None:
        tables = [t for t in tables if t.name == table]
        if not tables:
            raise JobAbort(f"{table} is not a partitioned table in partman.part_config; "
                           "nothing done")
    zstd = None if job.dry_run else zstd_command()
    failures = []
    for t in tables:
        with db.transaction(job.conn) as cur:
            arch = read_partitions(cur, t.schema, t.name + "_archive")
            if arch is None:
                raise JobAbort(f"{t.name}_archive does not exist: apply the schema migrations")
            states = ledger_states(cur, t.name)
        plan = plan_cold(states, arch.months, job.today, after_days, only=month)
        with job.step("cold_plan", table=t.name, cold_after_days=after_days,
                      cutoff=cutoff(job.today, after_days)) as st:
            st.set(eligible=len(plan.export))
            if plan.export:
                st.set(months=[month_label(m) for m, _ in plan.export])
            if plan.unverified:
                # The archive step reads them back (in the daily job, just before this step).
                st.set(not_read_back=[month_label(m) for m in plan.unverified])
            if plan.unrecorded:
                st.need_attention(
                    f"{t.name}_archive: {', '.join(month_label(m) for m in plan.unrecorded)} "
                    "not exported: hub_archived_partitions has no 'archived' row (count and "
                    "checksum) for them")
            if plan.missing:
                st.need_attention(
                    f"{t.name}: hub_archived_partitions says "
                    f"{', '.join(month_label(m) for m in plan.missing)} archived, but "
                    f"{t.name}_archive has no partition for them")
        if month is not None and not plan.export and month not in plan.unrecorded \
                and month not in plan.unverified:
            try:
                _explicit_month_not_exported(job, t, month, states.get(month))
            except ColdError as exc:
                failures.append(str(exc))
        for m, partition in plan.export:
            try:
                export_month(job, t, m, partition, zstd)
            except (ColdError, OffsiteError, OSError) as exc:  # recorded by its step
                failures.append(f"{t.name} {month_label(m)}: {exc}")
    if failures:
        raise JobAbort("; ".join(failures))


def _explicit_month_not_exported(job, t, month, state) -> None:
    """--month named a month this table cannot export: already cold is fine, else a failure."""
    with job.step("cold_export", table=t.name, month=month_label(month)) as st:
        if state == "cold":
            st.set(already="cold")
            st.rows = 0
            return
        reason = (f"{t.name} {month_label(month)} is not in {t.name}_archive "
                  f"(ledger state: {state or 'no row'}); only archived months go cold")
        raise ColdError(reason)


def export_month(job: Job, t: LiveTable, month: _dt.date, partition: str,
                 zstd: str | None) -> None:
    from psycopg2 import sql
    conn = job.conn
    paths = cold_paths(job.cfg.jobs.cold_dir, t.name, month)
    part = sql.Identifier(t.schema, partition)
    with job.step("cold_export", table=t.name, month=month_label(month),
                  partition=partition) as st:
        with db.transaction(conn) as cur:
            row = ledger_row(cur, t.name, month)
            if row is None or row.state != "archived" or not row.verified:
                raise ColdError(f"ledger state is {row.state if row else 'missing'}"
                                f"{'' if row is None or row.verified else ', not read back'}; "
                                "only archived, read-back months go cold")
            columns = table_columns(cur, t.schema, partition)
            server_version, timezone, datestyle = session_formats(cur)
        names = [c[0] for c in columns]
        covered = list(row.checksum_columns)
        gone = missing_columns(covered, names)
        if gone:
            raise ColdError(f"{partition} no longer has {', '.join(gone)}, which its ledger "
                            "checksum covers: a migration dropped or renamed a column of an "
                            "archived month; nothing exported (docs/schema.md)")
        expected = (row.row_count, row.checksum)
        st.rows = row.row_count
        st.set(file=paths.data)
        if job.dry_run:
            exists = os.path.exists(paths.data)
            st.set(would=("verify the existing file" if exists else "export and verify")
                   + f", then drop {partition}")
            st.outcome = DRY_RUN
            return
        make_dir(paths.dir)
        exported_at = None
        if os.path.exists(paths.data):
            # An earlier run stopped after the rename: the file is kept only if it verifies.
            try:
                verify_file(conn, zstd, paths.data, part, names, expected, "existing file",
                            covered)
            except ColdError as exc:
                raise ColdError(f"{exc}; it is not overwritten: move {paths.data} and "
                                f"{paths.manifest} away (or find out why) and run again") from None
            sha256, size = sha256_of(paths.data)
            if os.path.exists(paths.manifest):
                manifest = read_manifest(paths.manifest)
                problems = manifest_problems(manifest, table=t.name, month=month,
                                             row_count=row.row_count, checksum=row.checksum,
                                             sha256=sha256, size=size, checksum_columns=covered)
                if problems:
                    raise ColdError(f"manifest {paths.manifest} does not describe "
                                    f"{paths.data}: {'; '.join(problems)}; move both away "
                                    "and run again")
                exported_at = manifest.get("exported_at")
            else:
                exported_at = now_iso()
                write_json(paths.manifest_tmp, build_manifest(
                    table=t.name, month=month, partition=partition, control=t.control,
                    columns=columns, row_count=row.row_count, checksum=row.checksum,
                    sha256=sha256, size=size, server_version=server_version,
                    timezone=timezone, datestyle=datestyle, exported_at=exported_at,
                    file_name=os.path.basename(paths.data), checksum_columns=covered))
                os.rename(paths.manifest_tmp, paths.manifest)
                fsync_dir(paths.dir)
            st.set(file_state="reused")
        else:
            if os.path.exists(paths.manifest):
                raise ColdError(f"{paths.manifest} exists without {paths.data}; move it away "
                                "and run again")
            remove_quietly(paths.data_tmp, paths.manifest_tmp)
            exported_at = now_iso()
            try:
                write_file(conn, zstd, part, names, paths.data_tmp)
            except BaseException:
                remove_quietly(paths.data_tmp)
                raise
            try:
                verify_file(conn, zstd, paths.data_tmp, part, names, expected, "new file",
                            covered)
            except ColdError as exc:
                raise ColdError(f"{exc}; nothing was dropped: the month itself may differ from "
                                "its ledger row (written to after the archive?); the file is "
                                "kept for a look and written again by the next run") from None
            sha256, size = sha256_of(paths.data_tmp)
            write_json(paths.manifest_tmp, build_manifest(
                table=t.name, month=month, partition=partition, control=t.control,
                columns=columns, row_count=row.row_count, checksum=row.checksum,
                sha256=sha256, size=size, server_version=server_version, timezone=timezone,
                datestyle=datestyle, exported_at=exported_at,
                file_name=os.path.basename(paths.data), checksum_columns=covered))
            os.rename(paths.data_tmp, paths.data)
            os.rename(paths.manifest_tmp, paths.manifest)
            fsync_dir(paths.dir)
            st.set(file_state="written")
        st.set(bytes=size, sha256=sha256)
        if not offsite.configured(job.cfg):
            st.set(offsite="none")
            st.need_attention(f"{partition} stays archived: its file is the only copy, and a "
                              "month is dropped only once the off-site host holds a verified "
                              "second one; set [cold] offsite (maintenance_cold_offsite_host)")
            return
        st.set(offsite=store_copies(job.cfg, paths.manifest, paths.data, sha256))
        db.retry_on_lock_timeout(st, lambda: _drop_once(
            job, t, month, partition, covered, expected, paths, size, sha256, exported_at))
        st.set(dropped=partition)


def _drop_once(job, t, month, partition, covered, expected, paths, size, sha256,
               exported_at) -> None:
    """Lock, count again, detach, drop, mark cold: one transaction, all or nothing."""
    from psycopg2 import sql
    part = sql.Identifier(t.schema, partition)
    with db.transaction(job.conn) as cur:
        # SHARE: no one writes to the month from here to the commit; readers go on until the
        # DETACH below takes its short exclusive lock.
        cur.execute(sql.SQL("LOCK TABLE {part} IN SHARE MODE").format(part=part))
        now = count_and_checksum(cur, part, covered)
        if now != tuple(expected):
            raise ColdError(f"{partition} changed since it was archived: {now[0]} rows "
                            f"(checksum {now[1]}), the ledger says {expected[0]} (checksum "
                            f"{expected[1]}); the partition is kept, and {paths.data} with it")
        cur.execute(sql.SQL("ALTER TABLE {arch} DETACH PARTITION {part}").format(
            arch=sql.Identifier(t.schema, t.name + "_archive"), part=part))
        cur.execute(sql.SQL("DROP TABLE {part}").format(part=part))
        cur.execute(sql.SQL("""
            UPDATE {ledger} SET state = 'cold', cold_path = %s, cold_bytes = %s,
                cold_sha256 = %s, exported_at = %s, recorded_at = now(),
                offsite_sha256 = %s, offsite_verified_at = now()
            WHERE parent_table = %s AND month = %s AND state = 'archived'""").format(
            ledger=sql.Identifier(*LEDGER.split("."))),
            (paths.data, size, sha256, exported_at, sha256, t.name, month))
        if cur.rowcount != 1:
            raise ColdError(f"the ledger row of {partition} is no longer 'archived'; rolled back")


# --------------------------------------------------------------------------- second copies

def copy_missing_offsite(job: Job) -> None:
    """Cold files without a verified off-site copy (months that went cold, and supplements
    written, before migration 0012): store them now. Each file is first checked against the
    ledger's sha256, so a damaged file is reported, never copied."""
    from psycopg2 import sql
    if job.dry_run or not offsite.configured(job.cfg):
        return
    with db.transaction(job.conn) as cur:
        cur.execute(sql.SQL("""
            SELECT parent_table, month FROM {ledger}
            WHERE state = 'cold' AND (offsite_verified_at IS NULL OR EXISTS (
                SELECT 1 FROM jsonb_array_elements(cold_supplements) e
                WHERE NOT e ? 'offsite_verified_at'))
            ORDER BY parent_table, month""").format(ledger=sql.Identifier(*LEDGER.split("."))))
        pending = cur.fetchall()
    failures = []
    for table, month in pending:
        try:
            with job.step("cold_offsite", table=table, month=month_label(month)) as st:
                _copy_month_offsite(job, st, table, month)
        except (ColdError, OffsiteError, OSError) as exc:  # recorded by its step
            failures.append(f"{table} {month_label(month)}: {exc}")
    if failures:
        raise JobAbort("; ".join(failures))


def _copy_month_offsite(job: Job, st, table: str, month: _dt.date) -> None:
    from psycopg2 import sql
    ledger = sql.Identifier(*LEDGER.split("."))
    with db.transaction(job.conn) as cur:
        row = ledger_row(cur, table, month)
    if row is None or row.state != "cold":
        return
    stored = []
    if not row.offsite_verified:
        found = sha256_of(row.cold_path)[0] if os.path.isfile(row.cold_path) else "missing"
        if found != row.cold_sha256:
            raise ColdError(f"{row.cold_path} is {found if found == 'missing' else 'damaged'} "
                            f"(the ledger's sha256 is {row.cold_sha256}): not copied; "
                            "`hubctl cold restore` names what is left")
        store_copies(job.cfg, manifest_path(row.cold_path), row.cold_path, row.cold_sha256)
        with db.transaction(job.conn) as cur:
            cur.execute(sql.SQL("UPDATE {ledger} SET offsite_sha256 = cold_sha256, "
                                "offsite_verified_at = now() WHERE parent_table = %s "
                                "AND month = %s AND cold_sha256 = %s").format(ledger=ledger),
                        (table, month, row.cold_sha256))
        stored.append(os.path.basename(row.cold_path))
    for i, sup in enumerate(row.supplements):
        if "offsite_verified_at" in sup:
            continue
        spath = os.path.join(os.path.dirname(row.cold_path), sup["file"])
        found = sha256_of(spath)[0] if os.path.isfile(spath) else "missing"
        if found != sup["sha256"]:
            raise ColdError(f"{spath} is {found if found == 'missing' else 'damaged'} (the "
                            f"ledger's sha256 is {sup['sha256']}): not copied")
        store_copies(job.cfg, manifest_path(spath), spath, sup["sha256"])
        with db.transaction(job.conn) as cur:
            cur.execute(sql.SQL("""
                UPDATE {ledger} SET cold_supplements = jsonb_set(cold_supplements,
                    ARRAY[%s, 'offsite_verified_at'], to_jsonb(%s::text))
                WHERE parent_table = %s AND month = %s
                  AND cold_supplements -> %s ->> 'sha256' = %s""").format(ledger=ledger),
                (str(i), now_iso(), table, month, i, sup["sha256"]))
        stored.append(sup["file"])
    st.set(stored=stored)


# --------------------------------------------------------------------------- late rows

def supplement_late_rows(job: Job) -> None:
    """Rows in a live table's default partition for a month already in a cold file: each such
    month gets a supplement file beside its own (supplement_month). A month that fails is
    reported and left as it was (its rows stay in the default partition); the others still go.
    """
    failures = []
    zstd = None
    for t in managed_tables(job)[3]:
        with db.transaction(job.conn) as cur:
            parts = read_partitions(cur, t.schema, t.name)
            default = parts.default if parts else None
            waiting = default_rows_by_month(cur, t, default)
            states = ledger_states(cur, t.name) if waiting else {}
        for month in sorted(m for m in waiting if states.get(m) == "cold"):
            if zstd is None and not job.dry_run:
                zstd = zstd_command()
            try:
                supplement_month(job, t, month, default, zstd, waiting[month])
            except (ColdError, OffsiteError, OSError) as exc:  # recorded by its step
                failures.append(f"{t.name} {month_label(month)}: {exc}")
    if failures:
        raise JobAbort("; ".join(failures))


def supplement_month(job: Job, t: LiveTable, month: _dt.date, default: str, zstd: str | None,
                     waiting: int) -> None:
    """Move a cold month's late rows from the default partition to a new supplement file.

    One transaction: the rows are deleted from the default partition into a TEMP table, counted
    and checksummed over the ledger's columns, written through zstd to a temporary file, read
    back and compared; the file and its manifest get their final names (fsynced); the ledger
    row adds their count, checksum and bytes and lists the file; both files are stored off-site
    and read back there; then the commit. Any failure before the commit rolls the delete back:
    the rows stay in the default partition. A file left by a run whose commit did not happen is
    not in the ledger, and its rows are still in the default partition: the next run removes
    it and writes a new one (under a new name: the off-site store may hold the old one).
    """
    from psycopg2 import sql
    conn = job.conn
    label = month_label(month)
    with job.step("cold_late_rows", table=t.name, month=label, partition=default) as st:
        st.rows = int(waiting)
        if job.dry_run:
            st.set(would="move them to a supplement file of the cold month")
            st.outcome = DRY_RUN
            return
        if not offsite.configured(job.cfg):
            st.need_attention(f"{default}: {waiting} late row(s) of cold {label} stay: a "
                              "supplement needs its second copy before the rows leave the "
                              "database, and no off-site store is configured ([cold] offsite)")
            return
        with db.transaction(conn) as cur:
            row = ledger_row(cur, t.name, month)
            if row is None or row.state != "cold" or not row.cold_path:
                raise ColdError(f"the ledger row of {t.name} {label} is not cold; nothing moved")
            covered = list(row.checksum_columns)
            columns = table_columns(cur, t.schema, default)
            names = [c[0] for c in columns]
            gone = missing_columns(covered, names)
            if gone:
                raise ColdError(f"{default} no longer has {', '.join(gone)}, which the month's "
                                "checksum covers (docs/schema.md); nothing moved")
            written_at = now_iso()
            paths = supplement_paths(row.cold_path,
                                     supplement_stamp(_dt.datetime.now(_dt.timezone.utc)))
            make_dir(paths.dir)
            if os.path.exists(paths.data) or os.path.exists(paths.manifest):
                raise ColdError(f"{paths.data} exists already (a run in the same second); "
                                "nothing moved, the next run writes the rows")
            stale = unlisted_supplements(row.cold_path, row.supplements)
            if stale:
                # Not in the ledger: written by runs whose commit did not happen; their rows
                # are still in the default partition.
                remove_quietly(*stale)
                st.set(removed_unrecorded=len(stale))
            # The checksum's row text follows the session's TimeZone and DateStyle: the month's
            # file's, which restore uses for the whole month.
            main = manifest_path(row.cold_path)
            formats = read_manifest(main) if os.path.exists(main) else {}
            if formats.get("timezone") and formats.get("datestyle"):
                cur.execute("SELECT set_config('TimeZone', %s, true), "
                            "set_config('DateStyle', %s, true)",
                            (formats["timezone"], formats["datestyle"]))
            server_version, timezone, datestyle = session_formats(cur)
            late = sql.Identifier("hub_cold_late")
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in names)
            cur.execute(sql.SQL("CREATE TEMP TABLE hub_cold_late (LIKE {d}) ON COMMIT DROP")
                        .format(d=sql.Identifier(t.schema, default)))
            cur.execute(sql.SQL("""
                WITH moved AS (
                    DELETE FROM ONLY {d} WHERE {col} >= %s AND {col} < %s RETURNING *
                )
                INSERT INTO hub_cold_late ({cols}) SELECT {cols} FROM moved""").format(
                d=sql.Identifier(t.schema, default), col=sql.Identifier(t.control),
                cols=cols), (month, add_months(month, 1)))
            count, checksum = count_and_checksum(cur, late, covered)
            if count == 0:
                st.rows = 0
                st.set(moved="none: the rows left the default partition meanwhile")
                return
            try:
                copy_out(cur, zstd, late, names, paths.data_tmp)
                check_loaded(cur, zstd, paths.data_tmp, late, names, (count, checksum),
                             "supplement", covered)
                sha256, size = sha256_of(paths.data_tmp)
                manifest = build_manifest(
                    table=t.name, month=month, partition=default, control=t.control,
                    columns=columns, row_count=count, checksum=checksum, sha256=sha256,
                    size=size, server_version=server_version, timezone=timezone,
                    datestyle=datestyle, exported_at=written_at,
                    file_name=os.path.basename(paths.data), checksum_columns=covered)
                manifest["supplement"] = len(row.supplements) + 1
                manifest["supplement_of"] = os.path.basename(row.cold_path)
                write_json(paths.manifest_tmp, manifest)
                os.rename(paths.data_tmp, paths.data)
                os.rename(paths.manifest_tmp, paths.manifest)
                fsync_dir(paths.dir)
            except BaseException:
                remove_quietly(paths.data_tmp, paths.manifest_tmp)
                raise
            st.set(offsite=store_copies(job.cfg, paths.manifest, paths.data, sha256,
                                        offsite.SHORT_TIMEOUT))
            entry = {"file": os.path.basename(paths.data), "sha256": sha256, "bytes": size,
                     "row_count": count, "checksum": str(checksum), "written_at": written_at,
                     "offsite_verified_at": now_iso()}
            cur.execute(sql.SQL("""
                UPDATE {ledger} SET row_count = row_count + %s,
                    checksum = (checksum::numeric + %s)::text, cold_bytes = cold_bytes + %s,
                    cold_supplements = cold_supplements || jsonb_build_array(%s::jsonb),
                    recorded_at = now()
                WHERE parent_table = %s AND month = %s AND state = 'cold'
                  AND jsonb_array_length(cold_supplements) = %s""").format(
                ledger=sql.Identifier(*LEDGER.split("."))),
                (count, checksum, size, json.dumps(entry), t.name, month,
                 len(row.supplements)))
            if cur.rowcount != 1:
                raise ColdError(f"the ledger row of {t.name} {label} changed meanwhile; "
                                "rolled back, the rows stay in the default partition")
        st.rows = count
        st.set(file=paths.data, checksum=str(checksum), bytes=size)


# --------------------------------------------------------------------------- restore

def not_restorable(table: str, month: _dt.date, row: LedgerRow | None,
                   exists: bool) -> str | None:
    """Why `cold restore` of this month names nothing to restore, or None: the operator's
    input, not a failure of the cold tier (exit 2, no run record, no alert)."""
    label = month_label(month)
    if row is None:
        return (f"hub_archived_partitions has no row for {table} {label}: that month was "
                "never archived")
    if row.state != "cold":
        where = (f"{table}_archive" if row.state == "archived" else table)
        return (f"{table} {label} is not cold (ledger state: {row.state}): it is still in the "
                f"database; query {where}")
    if exists:
        qualified = f"{RESTORE_SCHEMA}.{restored_name(table, month)}"
        return (f"{qualified} already exists (restored before): query it, or DROP TABLE "
                f"{qualified}; to restore it again")
    return None


def check_restorable(cfg, table: str, month: _dt.date, connect=db.connect) -> None:
    """Before the job starts: ValueError if the ledger names nothing to restore. A database
    error is left to the job, which records and reports it."""
    conn = connect(cfg, "cold-restore", readonly=True)
    try:
        with db.transaction(conn) as cur:
            row = ledger_row(cur, table, month)
            cur.execute("SELECT to_regclass(%s)",
                        (db.qualified(RESTORE_SCHEMA, restored_name(table, month)),))
            exists = cur.fetchone()[0] is not None
            states = ledger_states(cur, table)
    finally:
        conn.close()
    reason = not_restorable(table, month, row, exists)
    if reason:
        raise ValueError(f"{reason}; {cold_months_text(table, states)}; nothing done")


def cold_months_text(table: str, states: dict) -> str:
    """The months of a table that cold restore can load, for an error message."""
    months = sorted(m for m, state in states.items() if state == "cold")
    if not months:
        return f"{table} has no month in cold files yet"
    if len(months) <= 6:
        return f"cold months of {table}: {', '.join(month_label(m) for m in months)}"
    return (f"cold months of {table}: {len(months)}, {month_label(months[0])} .. "
            f"{month_label(months[-1])}")


def restore(job: Job, table: str, month: _dt.date) -> None:
    """Load one cold month into hub_restored.<table>_pYYYY_MM, verified, or leave nothing."""
    from psycopg2 import sql
    conn = job.conn
    label = month_label(month)
    target = restored_name(table, month)
    qualified = f"{RESTORE_SCHEMA}.{target}"
    with job.step("cold_restore", table=table, month=label, target=qualified) as st:
        tables = {t.name: t for t in managed_tables(job)[3]}
        if table not in tables:
            raise ColdError(f"{table} is not a partitioned table in partman.part_config")
        t = tables[table]
        with db.transaction(conn) as cur:
            row = ledger_row(cur, table, month)
            cur.execute("SELECT to_regnamespace(%s)", (RESTORE_SCHEMA,))
            has_schema = cur.fetchone()[0] is not None
            cur.execute("SELECT to_regclass(%s)", (db.qualified(RESTORE_SCHEMA, target),))
            exists = cur.fetchone()[0] is not None
            archive_columns = table_columns(cur, t.schema, t.name + "_archive")
            server_version, timezone, datestyle = session_formats(cur)
        # Checked before the job started (check_restorable); again here, as it may have
        # changed since.
        if not has_schema:
            raise ColdError(f"schema {RESTORE_SCHEMA} does not exist: apply the schema "
                            "migrations (0006)")
        reason = not_restorable(table, month, row, exists)
        if reason:
            raise ColdError(reason)
        path = row.cold_path
        st.set(file=path)
        # Each file as the ledger recorded it: the local copy, or the off-site one in its place.
        # The month's own file holds the ledger's figures less its supplements' (late rows).
        late_rows, late_checksum = supplement_totals(row.supplements)
        wanted = [(path, row.cold_sha256, row.row_count - late_rows,
                   row.checksum - late_checksum, f"the cold file of {table} {label}")]
        for n, sup in enumerate(row.supplements, 1):
            wanted.append((os.path.join(os.path.dirname(path), sup["file"]), sup["sha256"],
                           int(sup["row_count"]), int(sup["checksum"]),
                           f"supplement {n} of {table} {label}"))
        files = []
        for fpath, fsha, fcount, fchecksum, what in wanted:
            found = usable_copy(job.cfg, st, fpath, fsha, what, job.dry_run)
            if found is None:       # dry run: it would be fetched
                st.outcome = DRY_RUN
                return
            files.append((fpath, found[0], found[1], fcount, fchecksum))
        loads = []
        for fpath, fsha, fsize, fcount, fchecksum in files:
            names, formats = _file_columns(fpath, table, month, fsha, fsize, fcount, fchecksum,
                                           row.checksum_columns, archive_columns, st)
            if fpath == path and formats:
                timezone, datestyle = formats
            loads.append((fpath, names))
        if row.supplements:
            st.set(supplements=len(row.supplements))
        st.rows = row.row_count
        if job.dry_run:
            st.set(would=f"create {qualified} and load {row.row_count} rows")
            st.outcome = DRY_RUN
            return
        zstd = zstd_command()
        rel = sql.Identifier(RESTORE_SCHEMA, target)
        with db.transaction(conn) as cur:
            cur.execute(sql.SQL(
                "CREATE TABLE {rel} (LIKE {arch} INCLUDING CONSTRAINTS INCLUDING INDEXES "
                "INCLUDING STORAGE INCLUDING COMPRESSION)").format(
                rel=rel, arch=sql.Identifier(t.schema, t.name + "_archive")))
            # The row text (so the checksum) of timestamptz depends on these: the export's.
            cur.execute("SELECT set_config('TimeZone', %s, true), "
                        "set_config('DateStyle', %s, true)", (timezone, datestyle))
            # FREEZE: the table is new in this transaction, so its rows need no later freeze.
            for fpath, names in loads:
                load_file(cur, zstd, fpath, rel, names, freeze=True)
            found = count_and_checksum(cur, rel, list(row.checksum_columns))
            if found != (row.row_count, row.checksum):
                raise ColdError(f"{' + '.join(f for f, _ in loads)} loaded {found[0]} rows (checksum {found[1]}), the "
                                f"ledger says {row.row_count} (checksum {row.checksum}); "
                                "rolled back, nothing restored")
            cur.execute(sql.SQL("COMMENT ON TABLE {rel} IS {text}").format(
                rel=rel, text=sql.Literal(
                    f"{label} of {table}, restored by hubctl cold restore on {job.today} from "
                    f"{path} ({row.row_count} rows, verified); drop it when done")))
            cur.execute(sql.SQL("ANALYZE {rel}").format(rel=rel))
        st.set(restored=qualified, checksum=str(row.checksum))


def usable_copy(cfg, st, path: str, sha256: str, what: str,
                dry_run: bool = False) -> tuple[str, int] | None:
    """(sha256, size) of path once it holds the bytes the ledger recorded: the local file, or,
    when that is missing or damaged, the off-site copy fetched, checked and put in its place
    (a damaged file is kept beside it as <name>.damaged-<time>). Its manifest, if missing, is
    fetched too. ColdError if neither copy will do. Under a dry run nothing is fetched: None
    says a fetch would be needed."""
    problem = None
    if not os.path.isfile(path):
        problem = "missing"
    else:
        found = sha256_of(path)
        if found[0] == sha256:
            _fetch_missing_manifest(cfg, st, path, dry_run)
            return found
        problem = f"damaged (sha256 {found[0]}, the ledger recorded {sha256})"
    if not offsite.configured(cfg):
        raise ColdError(f"{what}, {path}, is {problem}, and no off-site store is configured; "
                        "nothing restored")
    if dry_run:
        st.set(would=f"fetch {what} from {cfg.cold.offsite}: the local file is {problem}")
        return None
    directory = os.path.dirname(path)
    make_dir(directory)
    tmp = os.path.join(directory, "." + os.path.basename(path) + ".fetch")
    remove_quietly(tmp)
    try:
        try:
            offsite.get(cfg, offsite.rel_name(cfg.jobs.cold_dir, path), tmp, sha256)
        except OffsiteError as exc:
            raise ColdError(f"{what}, {path}, is {problem}, and {exc}; nothing restored") from None
        found = sha256_of(tmp)
        if found[0] != sha256:
            raise ColdError(f"{what}, {path}, is {problem}, and its off-site copy has sha256 "
                            f"{found[0]}, not the ledger's {sha256}; nothing restored")
        if os.path.exists(path):
            os.rename(path, f"{path}.damaged-{supplement_stamp(_dt.datetime.now(_dt.timezone.utc))}")
        os.rename(tmp, path)
        fsync_dir(directory)
    except BaseException:
        remove_quietly(tmp)
        raise
    st.set(from_offsite=st.fields.get("from_offsite", []) + [os.path.basename(path)])
    _fetch_missing_manifest(cfg, st, path, dry_run)
    return found


def _fetch_missing_manifest(cfg, st, path: str, dry_run: bool) -> None:
    """A cold file's manifest, if it is missing here, from the off-site store (checked against
    the ledger by the restore, like a local one). Without it the restore still goes on."""
    mpath = manifest_path(path)
    if os.path.exists(mpath) or dry_run or not offsite.configured(cfg):
        return
    tmp = os.path.join(os.path.dirname(mpath), "." + os.path.basename(mpath) + ".fetch")
    remove_quietly(tmp)
    try:
        offsite.get(cfg, offsite.rel_name(cfg.jobs.cold_dir, mpath), tmp)
        os.rename(tmp, mpath)
        fsync_dir(os.path.dirname(mpath))
        st.set(from_offsite=st.fields.get("from_offsite", []) + [os.path.basename(mpath)])
    except OffsiteError as exc:
        remove_quietly(tmp)
        st.set(manifest_fetch=str(exc)[:200])


def _file_columns(path, table, month, sha256, size, row_count, checksum, checksum_columns,
                  archive_columns, st):
    """(the file's columns, (TimeZone, DateStyle) or None) from its manifest, checked against
    what the ledger says of the file; without a manifest, the archive table's columns (the
    ledger's sha256 still proves the file). ColdError if they do not fit the archive table."""
    mpath = manifest_path(path)
    formats = None
    if os.path.exists(mpath):
        manifest = read_manifest(mpath)
        problems = manifest_problems(manifest, table=table, month=month, row_count=row_count,
                                     checksum=checksum, sha256=sha256, size=size,
                                     checksum_columns=checksum_columns)
        if problems:
            raise ColdError(f"manifest {mpath} does not match {path} and the "
                            f"ledger: {'; '.join(problems)}; nothing restored")
        names = manifest_columns(manifest)
        if manifest.get("timezone") and manifest.get("datestyle"):
            formats = (manifest["timezone"], manifest["datestyle"])
    else:
        names = [c[0] for c in archive_columns]
        st.set(manifest="missing")
    unknown = [n for n in names if n not in {c[0] for c in archive_columns}]
    if unknown:
        raise ColdError(f"{path} has columns {', '.join(unknown)} that {table}_archive no "
                        "longer has; restore it by hand (see its manifest)")
    gone = missing_columns(list(checksum_columns), names)
    if gone:
        raise ColdError(f"{path} lacks {', '.join(gone)}, which the ledger's checksum "
                        "covers; nothing restored")
    return names, formats
