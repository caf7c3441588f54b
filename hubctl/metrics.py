"""`hubctl metrics`: the hub's own facts as a node-exporter textfile, read-only.

    hubctl metrics [--textfile PATH] [--volume NAME=PATH ...] [--slow-seconds S] [--stanza S]

Written atomically (a temporary file in the same directory, fsync, rename), so node-exporter's
textfile collector never reads half a file. Every source is read on its own: one that fails
(the database down, pgBackRest unreachable) is reported as hub_metrics_source_up{source} 0, the
others are still written, and the exit code is 1. No lock is taken and no run is recorded.

Sizes and row counts come from the catalogue (pg_class.reltuples, pg_total_relation_size per
partition: a partitioned parent itself reports 0 bytes) and from the archive ledger's exact
counts, never from count(*) over a big table. The only counts are over default partitions,
which should be empty, and they stop at DEFAULT_ROWS_CAP.

Slow statements come from pg_stat_statements, which keeps totals per statement, not single
executions. Between two runs a statement counts as slow when its mean time over the new calls
((total - previous total) / (calls - previous calls)) or its new maximum exceeds --slow-seconds:
either proves at least one execution that slow. The previous totals are kept in a JSON state
file beside the textfile.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import tempfile
import time

from hubctl import backup, capacity, db, jobs, sizes
from hubctl.partitions import months_ahead, read_partitions

# The maintenance role makes this directory (hubmaint's) and the exporters role points
# node-exporter's textfile collector at it.
DEFAULT_TEXTFILE = "/var/lib/hub/metrics/hub.prom"
DEFAULT_SLOW_SECONDS = 1.0
DEFAULT_ROWS_CAP = 100_000
# Outcomes a run record can have (migration 0005); one series each, 1 for the last run's.
OUTCOMES = ("running", "ok", "attention", "failed", "busy")
# The job series label the job "hub_job": Prometheus' own "job" label (the scrape job) would
# rename a "job" label to "exported_job".
# A run that did its work: 'attention' ran to the end and found something to look at.
SUCCESS = ("ok", "attention")
LEDGER_STATES = ("live", "archived", "cold")

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# --------------------------------------------------------------------------- exposition

@dataclasses.dataclass
class Family:
    """One metric family of the text exposition format: name, type, help and samples."""
    name: str
    kind: str            # gauge or counter
    help: str
    samples: list = dataclasses.field(default_factory=list)   # [(labels dict, value)]

    def __post_init__(self):
        if not _NAME.match(self.name) or not self.name.startswith("hub_"):
            raise ValueError(f"metric name {self.name!r}: hub_ prefix and [a-zA-Z0-9_:] only")
        if self.kind not in ("gauge", "counter"):
            raise ValueError(f"metric {self.name}: type {self.kind!r}")

    def add(self, value, **labels) -> None:
        for key in labels:
            if not _LABEL.match(key) or key.startswith("__"):
                raise ValueError(f"metric {self.name}: label name {key!r}")
        self.samples.append((labels, value))


def _escape_label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    v = float(value)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2 ** 53:
        return str(int(v))
    return repr(v)


def render(families: list[Family]) -> str:
    """The text exposition (version 0.0.4): families by name, samples by labels. A family
    without samples is left out (node-exporter rejects a TYPE line with nothing after it)."""
    seen = set()
    out = []
    for fam in sorted(families, key=lambda f: f.name):
        if fam.name in seen:
            raise ValueError(f"metric family {fam.name} given twice")
        seen.add(fam.name)
        if not fam.samples:
            continue
        out.append(f"# HELP {fam.name} {_escape_help(fam.help)}")
        out.append(f"# TYPE {fam.name} {fam.kind}")
        lines = []
        for labels, value in fam.samples:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{fam.name}{{{text}}} {format_value(value)}" if text
                         else f"{fam.name} {format_value(value)}")
        if len({ln.rsplit(" ", 1)[0] for ln in lines}) != len(lines):
            raise ValueError(f"metric {fam.name}: the same labels twice")
        out.extend(sorted(lines))
    return "\n".join(out) + "\n"


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Replace path with text in one rename; a failure leaves the old file as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".hubctl-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --------------------------------------------------------------------------- slow statements

def slow_statements(previous: dict, current: list, threshold: float) -> tuple[int, float, dict]:
    """previous: {queryid: [calls, total_ms, max_ms]} from the last run; current: rows
    (queryid, calls, total_ms, max_ms). Returns (statements slower than threshold since the
    last run, the slowest time proven in that window in seconds, the new state).

    A statement whose calls went down was reset (pg_stat_statements_reset or eviction): its
    new totals are all since then. A statement seen the first time counts with its totals."""
    slow, slowest, state = 0, 0.0, {}
    for qid, calls, total_ms, max_ms in current:
        key = str(qid)
        state[key] = [calls, total_ms, max_ms]
        prev = previous.get(key)
        if prev is None or calls < prev[0]:
            new_calls, new_total, rose = calls, total_ms, max_ms
        else:
            new_calls, new_total = calls - prev[0], total_ms - prev[1]
            rose = max_ms if max_ms > prev[2] else 0.0
        if new_calls <= 0:
            continue
        proven = max(new_total / new_calls, rose) / 1000.0
        slowest = max(slowest, proven)
        if proven > threshold:
            slow += 1
    return slow, slowest, state


# How long the slowest proven time stays in hub_statement_slowest_seconds. Each run proves only
# what ran since the one before, so without a hold a second run within a scrape interval (cron's
# minute run just after a run by hand) would replace a slow statement by 0 before Prometheus
# read it, and HubSlowQuery would never fire.
SLOWEST_HOLD_SECONDS = 300


def held_slowest(held: list, now: float, slowest: float,
                 hold: float = SLOWEST_HOLD_SECONDS) -> tuple[float, list]:
    """held: [[unix time, seconds], ...] proven by earlier runs. Returns the slowest of those
    within `hold` seconds and of this run's, and the list to keep (this run's added if > 0)."""
    kept = [[e[0], e[1]] for e in held or []
            if isinstance(e, list) and len(e) == 2
            and all(isinstance(v, (int, float)) for v in e) and now - hold < e[0] <= now]
    if slowest > 0:
        kept.append([now, slowest])
    return max([slowest] + [s for _, s in kept]), kept


def read_state(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# --------------------------------------------------------------------------- sources

class Metrics:
    """The families one run writes, by name."""

    def __init__(self):
        self.families: dict[str, Family] = {}

    def family(self, name: str, kind: str, help_text: str) -> Family:
        if name not in self.families:
            self.families[name] = Family(name, kind, help_text)
        return self.families[name]

    def gauge(self, name: str, help_text: str, value, **labels) -> None:
        self.family(name, "gauge", help_text).add(value, **labels)

    def merge(self, other: "Metrics") -> None:
        for name, fam in other.families.items():
            self.family(name, fam.kind, fam.help).samples.extend(fam.samples)


def _ts(value) -> float | None:
    return None if value is None else value.timestamp()


JOBS_SQL = """
    SELECT DISTINCT ON (job) job, outcome, started_at, finished_at
    FROM public.hub_job_runs ORDER BY job, started_at DESC, id DESC"""
JOBS_SUCCESS_SQL = """
    SELECT job, max(finished_at) FROM public.hub_job_runs
    WHERE outcome IN ('ok', 'attention') GROUP BY job"""
JOBS_FINISHED_SQL = """
    SELECT DISTINCT ON (job) job, extract(epoch FROM finished_at - started_at)
    FROM public.hub_job_runs WHERE finished_at IS NOT NULL AND outcome <> 'busy'
    ORDER BY job, started_at DESC, id DESC"""


def collect_jobs(m: Metrics, cur) -> None:
    cur.execute(JOBS_SQL)
    for job, outcome, started, _finished in cur.fetchall():
        for o in OUTCOMES:
            m.gauge("hub_job_last_outcome", "1 for the outcome of the job's newest run record",
                    o == outcome, hub_job=job, outcome=o)
        m.gauge("hub_job_last_run_timestamp_seconds", "when the job's newest run started",
                _ts(started), hub_job=job)
    cur.execute(JOBS_SUCCESS_SQL)
    for job, finished in cur.fetchall():
        m.gauge("hub_job_last_success_timestamp_seconds",
                "when the job last finished ok or attention", _ts(finished), hub_job=job)
    cur.execute(JOBS_FINISHED_SQL)
    for job, seconds in cur.fetchall():
        m.gauge("hub_job_last_duration_seconds", "how long the job's newest finished run took",
                float(seconds), hub_job=job)


def collect_tables(m: Metrics, cur, today, rows_cap: int = DEFAULT_ROWS_CAP) -> None:
    from psycopg2 import sql
    tables, tiers = sizes.read_tables(cur)
    for s in tiers:
        labels = {"table": s.table, "tier": s.tier}
        m.gauge("hub_table_bytes", "bytes of the table's partitions (heap, TOAST, indexes)",
                s.bytes, **labels)
        m.gauge("hub_table_index_bytes", "bytes of the indexes of the table's partitions",
                s.index_bytes, **labels)
        m.gauge("hub_table_rows_estimate", "rows by the planner's statistics (reltuples)",
                s.rows, **labels)
        m.gauge("hub_table_partitions", "partitions attached (the default one included)",
                s.partitions, **labels)
    for t in tables:
        parts = read_partitions(cur, t.schema, t.name)
        if parts is None:
            continue
        m.gauge("hub_partitions_months_ahead",
                "consecutive monthly partitions after the current month", months_ahead(
                    today, parts.months), table=t.name)
        if parts.default is not None:
            cur.execute(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM ONLY {} LIMIT %s) s").format(
                sql.Identifier(t.schema, parts.default)), (rows_cap,))
            m.gauge("hub_default_partition_rows",
                    f"rows in the default partition (counted up to {rows_cap})",
                    cur.fetchone()[0], table=t.name)
    seen = set()
    for led in sizes.read_ledger(cur):
        seen.add(led.table)
        m.gauge("hub_ledger_months", "months in the archive ledger, by state", led.months,
                table=led.table, state=led.state)
        m.gauge("hub_ledger_rows", "rows the ledger recorded for those months (exact)", led.rows,
                table=led.table, state=led.state)
        if led.state == "cold":
            m.gauge("hub_cold_bytes", "bytes of the table's cold files", led.cold_bytes,
                    table=led.table)
    for t in tables:
        if t.name not in seen:
            m.gauge("hub_cold_bytes", "bytes of the table's cold files", 0, table=t.name)


STATEMENTS_SQL = """
    SELECT queryid, sum(calls)::bigint, sum(total_exec_time), max(max_exec_time)
    FROM public.pg_stat_statements WHERE queryid IS NOT NULL GROUP BY queryid"""


def collect_statements(m: Metrics, cur, state_path: str, threshold: float) -> dict:
    cur.execute(STATEMENTS_SQL)
    rows = [(q, int(c), float(t), float(x)) for q, c, t, x in cur.fetchall()]
    kept = read_state(state_path)
    slow, slowest, state = slow_statements(kept.get("statements", {}), rows, threshold)
    slowest, held = held_slowest(kept.get("slowest_held", []), time.time(), slowest)
    total_before = kept.get("slow_total", 0)
    m.family("hub_slow_statements_total", "counter",
             f"statements seen slower than {threshold} s, summed over hubctl metrics runs").add(
        total_before + slow)
    m.gauge("hub_slow_statements", f"statements slower than {threshold} s since the last run",
            slow)
    m.gauge("hub_statement_slowest_seconds",
            f"the slowest execution time proven in the last {SLOWEST_HOLD_SECONDS} s", slowest)
    m.gauge("hub_slow_statement_threshold_seconds", "the --slow-seconds this file was made with",
            threshold)
    return {"statements": state, "slow_total": total_before + slow, "slowest_held": held}


ARCHIVER_SQL = """
    SELECT archived_count, failed_count, last_archived_time, last_failed_time,
           (SELECT coalesce(sum(size), 0)::bigint FROM pg_catalog.pg_ls_waldir()),
           (SELECT count(*) FROM pg_catalog.pg_ls_archive_statusdir() WHERE name LIKE '%%.ready')
             * (SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size')
    FROM pg_catalog.pg_stat_archiver"""


def collect_archiver(m: Metrics, cur, queue_max_mb: int | None = None) -> None:
    cur.execute(ARCHIVER_SQL)
    archived, failed, archived_at, failed_at, wal_bytes, ready_bytes = cur.fetchone()
    m.gauge("hub_wal_bytes", "bytes in pg_wal, recycled segments included (pg_ls_waldir)",
            wal_bytes)
    m.gauge("hub_wal_ready_bytes", "bytes of WAL segments waiting to be archived (.ready): "
            "the queue archive-push-queue-max limits", ready_bytes)
    if queue_max_mb:
        m.gauge("hub_wal_queue_max_bytes", "pgBackRest's archive-push-queue-max: past it, WAL "
                "is dropped from the archive", queue_max_mb * 1024 * 1024)
    m.gauge("hub_wal_archived_total", "WAL segments archived (pg_stat_archiver)", archived)
    m.gauge("hub_wal_archive_failed_total", "failed WAL archive attempts (pg_stat_archiver)",
            failed)
    if archived_at is not None:
        m.gauge("hub_wal_last_archived_timestamp_seconds", "when a segment was last archived",
                _ts(archived_at))
    failing = failed_at is not None and (archived_at is None or failed_at > archived_at)
    m.gauge("hub_wal_archive_failing", "1 when the last archive attempt failed", failing)


def collect_backups(m: Metrics, stanza: str, now: float) -> None:
    for r in backup.repo_summary(backup.read_info(stanza), now):
        repo = str(r["repo"])
        m.gauge("hub_backup_repo_ok", "1 when pgBackRest reports the repository ok",
                r["status"] == "ok", repo=repo)
        m.gauge("hub_backup_count", "good backups in the repository", r["backups"], repo=repo)
        if r.get("newest_full_repo_bytes") is not None:
            m.gauge("hub_backup_full_repo_bytes",
                    "bytes the newest full backup takes in the repository (what the next needs)",
                    r["newest_full_repo_bytes"], repo=repo)
        for kind, brief in (("any", r["newest"]), ("full", r["newest_full"])):
            if brief is not None:
                m.gauge("hub_backup_newest_age_seconds", "age of the newest good backup",
                        round(brief["age_hours"] * 3600), repo=repo, type=kind)


def collect_volume(m: Metrics, name: str, path: str) -> None:
    """One volume: a path that is missing (repo1 before pgBackRest is installed) is that
    volume's source down, never the others'."""
    st = os.statvfs(path)
    m.gauge("hub_volume_size_bytes", "size of the file system holding the path",
            st.f_blocks * st.f_frsize, volume=name, path=path)
    m.gauge("hub_volume_free_bytes", "bytes free to unprivileged users on that file system",
            st.f_bavail * st.f_frsize, volume=name, path=path)


# --------------------------------------------------------------------------- the command

def _volume_arg(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not _LABEL.match(name) or not path.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=/absolute/path")
    return name, path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--textfile", default=DEFAULT_TEXTFILE, metavar="PATH",
                   help=f"the file node-exporter's textfile collector reads (default "
                        f"{DEFAULT_TEXTFILE}); it must end in .prom")
    p.add_argument("--volume", type=_volume_arg, action="append", default=[],
                   metavar="NAME=PATH", help="report the file system holding PATH as NAME "
                   "(repeat: data=/var/lib/postgresql repo1=/var/lib/pgbackrest)")
    p.add_argument("--slow-seconds", type=float, default=DEFAULT_SLOW_SECONDS, metavar="S",
                   help=f"a statement slower than this is slow (default {DEFAULT_SLOW_SECONDS})")
    p.add_argument("--wal-queue-max-mb", type=int, default=None, metavar="MB",
                   help="pgBackRest's archive-push-queue-max, reported beside pg_wal's size")
    p.add_argument("--stanza", default=None, metavar="NAME",
                   help="also report pgBackRest's repositories of this stanza")


def validate(args: argparse.Namespace, _today) -> None:
    if not args.textfile.endswith(".prom") or not os.path.isabs(args.textfile):
        raise ValueError(f"--textfile {args.textfile}: an absolute path ending in .prom "
                         "(node-exporter reads only those)")
    if not os.path.isdir(os.path.dirname(args.textfile)):
        raise ValueError(f"--textfile {args.textfile}: its directory does not exist")
    if not args.slow_seconds > 0:
        raise ValueError("--slow-seconds must be more than 0")
    if args.wal_queue_max_mb is not None and args.wal_queue_max_mb <= 0:
        raise ValueError("--wal-queue-max-mb must be more than 0")
    names = [n for n, _ in args.volume]
    if len(set(names)) != len(names):
        raise ValueError("--volume: each NAME once")


def run(args: argparse.Namespace, cfg, today, connect=db.connect) -> int:
    log = jobs.Logger("metrics")
    started = time.monotonic()
    now = time.time()
    m = Metrics()
    state_path = args.textfile[:-len(".prom")] + ".state.json"
    state = {}
    sources = {}

    def source(name, fn):
        """fn(metrics) fills a Metrics of its own, merged only when it succeeds: a source
        that fails half way writes none of its series, and hub_metrics_source_up says so."""
        part = Metrics()
        try:
            result = fn(part)
        except Exception as exc:  # one source down must not hide the others
            sources[name] = False
            log.line(name, outcome=jobs.FAILED, error=db.describe_error(exc)[0])
            return None
        sources[name] = True
        m.merge(part)
        return result

    def from_db(_part):
        conn = connect(cfg, "metrics", readonly=True)
        try:
            source("jobs", lambda p: _in_transaction(conn, lambda c: collect_jobs(p, c)))
            source("tables", lambda p: _in_transaction(conn, lambda c: collect_tables(p, c, today)))
            source("archiver", lambda p: _in_transaction(
                conn, lambda c: collect_archiver(p, c, args.wal_queue_max_mb)))
            source("capacity", lambda p: _in_transaction(
                conn, lambda c: capacity.collect_metrics(p, c, today)))
            found = source("statements", lambda p: _in_transaction(
                conn, lambda c: collect_statements(p, c, state_path, args.slow_seconds)))
            if found is not None:
                state.update(found)
        finally:
            conn.close()

    source("database", from_db)
    if args.stanza:
        source("pgbackrest", lambda p: collect_backups(p, args.stanza, now))
    for name, path in sorted(args.volume):
        source(f"volume_{name}", lambda p, name=name, path=path: collect_volume(p, name, path))
    for name, up in sources.items():
        m.gauge("hub_metrics_source_up", "1 when the source was read in this run", up,
                source=name)
    m.gauge("hub_metrics_timestamp_seconds", "when hubctl metrics wrote this file", now)
    m.gauge("hub_metrics_duration_seconds", "how long hubctl metrics took to read its sources",
            round(time.monotonic() - started, 3))
    try:
        write_atomic(args.textfile, render(list(m.families.values())))
        if state:
            write_atomic(state_path, json.dumps(state), mode=0o600)
    except OSError as exc:
        log.line("write", path=args.textfile, outcome=jobs.FAILED, error=str(exc))
        return jobs.EXIT_FAILED
    failed = sorted(n for n, up in sources.items() if not up)
    log.line("write", path=args.textfile, families=len(m.families),
             outcome=jobs.FAILED if failed else jobs.OK,
             **({"failed_sources": ",".join(failed)} if failed else {}))
    return jobs.EXIT_FAILED if failed else jobs.EXIT_OK


def _in_transaction(conn, fn):
    with db.transaction(conn) as cur:
        return fn(cur)
