"""`hubctl wal-check`: is each repository's WAL archive continuous? Read-only, but for
--repair-repo.

    hubctl wal-check [--textfile PATH] [--stanza S] [--repo N ...] [--settle-seconds S]
                     [--repair-repo N ...] [--repair-retry-hours H]

pgBackRest reports an archive's first and last segment (`info`), never a hole between them, and
its `verify` (2.55) does not report a segment missing between two archived ones either. A hole
comes from WAL dropped past archive-push-queue-max (pgBackRest then tells PostgreSQL the
segments were archived) or from a file lost in the repository; a restore cannot replay past it.
So this command lists each repository's archive (`pgbackrest repo-ls`) and counts the segments
missing in two ranges of the current archive (the database the newest backup belongs to):

    newest_backup   from the newest good backup's first segment to the highest segment held:
                    a hole here means point-in-time recovery from the newest backup stops at it
    oldest_backup   from the oldest good backup's first: a hole here only limits restores of
                    the older backups (a new backup does not repair it; retention ages it out)

A segment counts as held on any timeline, and as a .partial file too. A hole seen in a first
listing is listed again after --settle-seconds, and only the segments still missing are
reported: with archive-async several segments are pushed at once, so the newest may land
before the one ahead of it. The wait is taken once for all repositories with a hole.

The result is a node-exporter textfile written atomically (hub_wal.prom beside hub.prom), and
one log line per repository that names the first run of missing segments in each range
(first_gap_since_newest, first_gap_since_oldest). Exit 0 when every archive is
continuous, 3 when a hole was found, 1 when a repository could not be checked (or a repair
failed).

--repair-repo N: a hole since the newest backup of repository N is repaired by a new full
backup there (a restore from it replays again), taken as the scheduled job does (lock, run
record, alert on failure): the hub repairs repo1 (`backup full`), the off-site host repo2
(`backup offsite`). Only where it is safe (why_not_repair): archiving must have resumed past
the hole, no other job may hold the lock, and after a failed attempt the next waits
--repair-retry-hours. The textfile is written before the repair, so the hole is alerted
whatever the repair does; the next check, after the new backup, resolves it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import time

from hubctl import backup, db, jobs
from hubctl.metrics import Metrics, read_state, render, write_atomic

DEFAULT_TEXTFILE = "/var/lib/hub/metrics/hub_wal.prom"
DEFAULT_SETTLE_SECONDS = 30.0
DEFAULT_SEGMENT_MB = 16
# Listing a repository over TLS: each read may wait this long (pgBackRest's io-timeout), and the
# whole listing this long before it counts as failed.
LIST_IO_TIMEOUT = 30
LIST_TIMEOUT = 600
RANGES = ("newest_backup", "oldest_backup")

# <archive id>/<timeline+log>/<segment>[.partial]-<sha1>[.<compression>]; history files,
# .backup files and archive.info do not match.
_SEGMENT = re.compile(r"^(?P<id>[0-9]+-[0-9]+)/[0-9A-F]{16}/"
                      r"(?P<name>[0-9A-F]{24})(?:\.partial)?-[0-9a-f]{40}(?:\.[a-z0-9]+)?$")
_NAME = re.compile(r"^[0-9A-F]{24}$")


class WalCheckError(jobs.JobAbort):
    """A repository's archive could not be read, or reads as something this check cannot judge."""


# --------------------------------------------------------------------------- command line

def list_argv(stanza: str, repo: int) -> list[str]:
    """The listing the sudoers rule allows. pgBackRest 2.55 takes the path from the repository's
    root whatever --stanza says, but repo2's TLS server admits a client only for its stanza
    (tls-server-auth), so --stanza must be there."""
    return backup.command(stanza, f"--repo={repo}", f"--io-timeout={LIST_IO_TIMEOUT}",
                          "--output=text", "--recurse", "repo-ls", f"archive/{stanza}")


def list_segments(stanza: str, repo: int) -> str:
    proc = backup.run_pgbackrest(list_argv(stanza, repo), timeout=LIST_TIMEOUT)
    if proc.returncode != 0:
        said = backup.tail(proc.stderr) or backup.tail(proc.stdout) or "no output"
        raise WalCheckError(f"pgbackrest repo-ls of repo{repo} exited {proc.returncode}: {said}")
    return proc.stdout


# --------------------------------------------------------------------------- arithmetic

def segments_per_log(segment_mb: int) -> int:
    return 0x1_0000_0000 // (segment_mb * 1024 * 1024)


def position(name: str, per_log: int) -> int:
    """A segment name's place in the WAL sequence, whatever its timeline."""
    if not _NAME.match(name):
        raise WalCheckError(f"{name!r} is not a WAL segment name")
    log, seg = int(name[8:16], 16), int(name[16:24], 16)
    if seg >= per_log:
        raise WalCheckError(f"segment {name} does not exist with {0x1_0000_0000 // per_log // 2**20} MB "
                            "segments: give hubctl wal-check the server's wal_segment_size")
    return log * per_log + seg


def segment_name(pos: int, per_log: int, timeline: str = "00000001") -> str:
    return f"{timeline}{pos // per_log:08X}{pos % per_log:08X}"


def held_positions(listing: str, archive_id: str, per_log: int) -> set[int]:
    """The positions of every segment the listing holds under archive_id."""
    held = set()
    for line in listing.splitlines():
        m = _SEGMENT.match(line.strip())
        if m and m.group("id") == archive_id:
            held.add(position(m.group("name"), per_log))
    return held


def missing(held: set[int], first: int, last: int) -> list[int]:
    return [p for p in range(first, last + 1) if p not in held]


def plan(info: dict, repo: int) -> dict | None:
    """What to check in one repository, from its `pgbackrest info` entry: the current archive
    id and the first segment of its newest and oldest good backups (and the newest's last,
    which must be held too). None when the repository holds no good backup: nothing to
    replay, and HubBackupMissing says so."""
    archives = [a for a in info.get("archive") or []
                if (a.get("database") or {}).get("repo-key") == repo]
    backups = [b for b in info.get("backup") or []
               if (b.get("database") or {}).get("repo-key") == repo and not b.get("error")]
    if not backups:
        return None
    backups.sort(key=lambda b: (b.get("timestamp") or {}).get("stop") or 0)
    db_id = backups[-1]["database"].get("id")
    current = [a for a in archives if (a.get("database") or {}).get("id") == db_id]
    if not current:
        raise WalCheckError(f"repo{repo}: pgbackrest info lists no archive for the newest "
                            f"backup's database (id {db_id})")
    same_db = [b for b in backups if b["database"].get("id") == db_id]
    return {"archive_id": current[-1]["id"],
            "newest_start": same_db[-1]["archive"]["start"],
            "newest_stop": same_db[-1]["archive"]["stop"],
            "oldest_start": same_db[0]["archive"]["start"],
            "newest_label": same_db[-1].get("label")}


def gaps(p: dict, held: set[int], per_log: int) -> dict[str, list[int]]:
    """The positions missing in each range; the top of both is the highest segment held or the
    newest backup's last, whichever is later."""
    top = max([*held, position(p["newest_stop"], per_log)])
    return {"newest_backup": missing(held, position(p["newest_start"], per_log), top),
            "oldest_backup": missing(held, position(p["oldest_start"], per_log), top)}


def persistent(first: dict[str, list[int]], again: dict[str, list[int]]) -> dict[str, list[int]]:
    """The holes of the first listing that the second still has: a segment that arrived in
    between was in flight, not lost."""
    return {k: [p for p in first[k] if p in set(again[k])] for k in first}


def describe(holes: list[int], per_log: int) -> str:
    """'0000000100000000000000A3' or '...A3 .. ...A7 (5)' for the first run of missing segments."""
    if not holes:
        return ""
    end = 0
    while end + 1 < len(holes) and holes[end + 1] == holes[end] + 1:
        end += 1
    first = segment_name(holes[0], per_log)
    if end == 0:
        return first
    return f"{first}..{segment_name(holes[end], per_log)} ({end + 1})"


# --------------------------------------------------------------------------- the command

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--textfile", default=DEFAULT_TEXTFILE, metavar="PATH",
                   help=f"node-exporter textfile to write (default {DEFAULT_TEXTFILE}); "
                        "it must end in .prom")
    p.add_argument("--stanza", default=backup.DEFAULT_STANZA, metavar="NAME",
                   help=f"pgBackRest stanza (default {backup.DEFAULT_STANZA})")
    p.add_argument("--repo", type=int, action="append", default=None, metavar="N",
                   help="a repository to check (repeat; default 1 and 2)")
    p.add_argument("--settle-seconds", type=float, default=DEFAULT_SETTLE_SECONDS, metavar="S",
                   help="wait this long before listing a repository with a hole again "
                        f"(default {DEFAULT_SETTLE_SECONDS:g})")
    p.add_argument("--repair-repo", type=int, action="append", default=None, metavar="N",
                   help="take a new full backup in repository N (one this host backs up: 1 on "
                        "the hub, 2 on the off-site host) when its archive has a hole since its "
                        "newest backup and archiving has resumed (repeatable)")
    p.add_argument("--repair-retry-hours", type=float, default=DEFAULT_REPAIR_RETRY_HOURS,
                   metavar="H", help="after a repairing backup failed, try again only this "
                                     f"much later (default {DEFAULT_REPAIR_RETRY_HOURS:g})")
    p.add_argument("--wal-segment-mb", type=int, default=DEFAULT_SEGMENT_MB, metavar="MB",
                   help=f"the server's wal_segment_size (default {DEFAULT_SEGMENT_MB})")


def validate(args: argparse.Namespace, _today) -> None:
    if not args.textfile.endswith(".prom") or not os.path.isabs(args.textfile):
        raise ValueError(f"--textfile {args.textfile}: an absolute path ending in .prom "
                         "(node-exporter reads only those)")
    if not os.path.isdir(os.path.dirname(args.textfile)):
        raise ValueError(f"--textfile {args.textfile}: its directory does not exist")
    args.repo = args.repo or [backup.LOCAL_REPO, backup.OFFSITE_REPO]
    if any(r < 1 or r > 256 for r in args.repo) or len(set(args.repo)) != len(args.repo):
        raise ValueError("--repo: each repository number (1-256) once")
    for repo in args.repair_repo or []:
        if repo not in REPAIR_JOBS or repo not in args.repo:
            raise ValueError(f"--repair-repo {repo}: a repository this check lists "
                             f"({', '.join(map(str, args.repo))}) and that hubctl backs up "
                             f"({', '.join(map(str, REPAIR_JOBS))})")
    if not 0 < args.repair_retry_hours <= 24 * 7:
        raise ValueError("--repair-retry-hours: more than 0, at most 168")
    if not 0 <= args.settle_seconds <= 600:
        raise ValueError("--settle-seconds: from 0 to 600")
    mb = args.wal_segment_mb
    if mb < 1 or mb > 1024 or mb & (mb - 1):
        raise ValueError("--wal-segment-mb: a power of two from 1 to 1024 (PostgreSQL's "
                         "wal_segment_size)")


def check_repo(stanza: str, repo: int, p: dict, per_log: int,
               lister=list_segments) -> dict:
    """One listing of a repository: what it holds and the holes in each range."""
    held = held_positions(lister(stanza, repo), p["archive_id"], per_log)
    return {"held": held, "gaps": gaps(p, held, per_log)}


def settle(stanza: str, results: dict, plans: dict, per_log: int, seconds: float,
           lister=list_segments, sleep=time.sleep) -> dict[int, str]:
    """Wait once (not once per repository), then list again every repository whose first
    listing had a hole; keep only the holes still there (a segment that arrived meanwhile was
    in flight, not lost). A repository whose second listing fails leaves results and is
    returned with the error."""
    holed = [r for r, res in results.items() if any(res["gaps"].values())]
    failed: dict[int, str] = {}
    if not holed:
        return failed
    sleep(seconds)
    for repo in holed:
        try:
            again = check_repo(stanza, repo, plans[repo], per_log, lister)
        except jobs.JobAbort as exc:
            failed[repo] = str(exc)
            del results[repo]
            continue
        results[repo] = {"held": again["held"],
                         "gaps": persistent(results[repo]["gaps"], again["gaps"])}
    return failed


def run(args: argparse.Namespace, cfg, today, read_info=backup.read_info,
        lister=list_segments, sleep=time.sleep, run_job=jobs.run_job, clock=time.time,
        archiving=None) -> int:
    log = jobs.Logger("wal-check")
    started = time.monotonic()
    per_log = segments_per_log(args.wal_segment_mb)
    m = Metrics()
    up: dict[int, bool] = {}
    plans: dict[int, dict] = {}
    results: dict[int, dict] = {}
    try:
        info = read_info(args.stanza)
    except jobs.JobAbort as exc:
        info = None
        log.line("info", outcome=jobs.FAILED, error=str(exc))
    for repo in args.repo:
        if info is None:
            up[repo] = False
            continue
        try:
            p = plan(info, repo)
            if p is None:
                log.line(f"repo{repo}", outcome=jobs.OK, note="no good backup: nothing to check")
                up[repo] = True
                continue
            results[repo] = check_repo(args.stanza, repo, p, per_log, lister)
            plans[repo] = p
        except jobs.JobAbort as exc:
            up[repo] = False
            log.line(f"repo{repo}", outcome=jobs.FAILED, error=str(exc))
    for repo, error in settle(args.stanza, results, plans, per_log, args.settle_seconds,
                              lister, sleep).items():
        up[repo] = False
        log.line(f"repo{repo}", outcome=jobs.FAILED, error=error)
    holes = False
    for repo in args.repo:
        if repo not in results:
            continue
        up[repo] = True
        result, p, labels = results[repo], plans[repo], {"repo": str(repo)}
        m.gauge("hub_wal_archive_segments", "WAL segments held in the repository's current archive",
                len(result["held"]), **labels)
        for since in RANGES:
            m.gauge("hub_wal_archive_missing_segments",
                    "WAL segments missing in the repository's archive since its newest or its "
                    "oldest good backup's first segment", len(result["gaps"][since]),
                    since=since, **labels)
        gap = result["gaps"]["oldest_backup"]
        holes = holes or bool(gap)
        fields = {"archive": p["archive_id"], "held": len(result["held"]),
                  "missing_since_newest": len(result["gaps"]["newest_backup"]),
                  "missing_since_oldest": len(gap)}
        for since in RANGES:
            if result["gaps"][since]:
                fields[f"first_gap_since_{since.split('_')[0]}"] = describe(result["gaps"][since], per_log)
        if gap:
            fields["newest_backup"] = p["newest_label"]
        log.line(f"repo{repo}", outcome=jobs.ATTENTION if gap else jobs.OK, **fields)
    for repo, ok in up.items():
        m.gauge("hub_wal_check_up", "1 when the repository's archive was listed and judged",
                ok, repo=str(repo))
    now = time.time()
    m.gauge("hub_wal_check_timestamp_seconds", "when hubctl wal-check wrote this file", now)
    m.gauge("hub_wal_check_duration_seconds", "how long hubctl wal-check took",
            round(time.monotonic() - started, 3))
    try:
        write_atomic(args.textfile, render(list(m.families.values())))
    except OSError as exc:
        log.line("write", path=args.textfile, outcome=jobs.FAILED, error=str(exc))
        return jobs.EXIT_FAILED
    # The file says what was found before any repair: the alert fires for every hole, and the
    # next check, after the repairing backup, resolves it.
    repaired_ok = True
    for repo in args.repair_repo or []:
        if repo in results:
            repaired_ok &= repair(args, cfg, today, repo, results[repo], log, run_job, clock,
                                  archiving or archiving_problem)
    if not all(up.values()) or not repaired_ok:
        return jobs.EXIT_FAILED
    return jobs.EXIT_ATTENTION if holes else jobs.EXIT_OK


# --------------------------------------------------------------------------- repair

# The backup that starts a new chain after a hole, per repository, as the job the host runs
# anyway: the hub takes repo1's (backup full), the off-site host repo2's (backup offsite).
REPAIR_JOBS = {backup.LOCAL_REPO: ("backup-full", "full"),
               backup.OFFSITE_REPO: ("backup-offsite", "offsite")}
DEFAULT_REPAIR_RETRY_HOURS = 6.0
REPAIR_STATE = ".hub_wal_repair.json"


def repair_state_path(textfile: str) -> str:
    """Beside the textfile; node-exporter reads only *.prom files."""
    return os.path.join(os.path.dirname(textfile), REPAIR_STATE)


def why_not_repair(result: dict, archiving: str | None, failed_at: float | None, now: float,
                   retry_hours: float, lock_holder: str | None) -> str | None:
    """Why a repository with a hole since its newest backup gets no backup now, or None to
    take one. No hole: nothing to repair. Archiving failing now (pg_stat_archiver, or no
    segment held after the hole): the backup would fail its own archive check, and the hole may
    still grow. A repair that failed less than retry_hours ago: its failure was alerted, and
    one attempt per check would page every 15 minutes. Another job holding the lock: the next
    check tries again."""
    holes = result["gaps"]["newest_backup"]
    if not holes:
        return "no hole since the newest backup"
    if archiving:
        return f"archiving has not resumed: {archiving}"
    if not result["held"] or max(result["held"]) < max(holes):
        return "archiving has not resumed past the hole: no segment after it is held yet"
    if failed_at is not None and now - failed_at < retry_hours * 3600:
        next_try = _dt.datetime.fromtimestamp(failed_at + retry_hours * 3600).astimezone()
        return (f"the last repairing backup failed (alerted then); the next try is after "
                f"{next_try.isoformat(timespec='minutes')}")
    if lock_holder is not None:
        return f"another job holds the lock ({lock_holder or 'holder unknown'}); the next check tries again"
    return None


def _lock_holder(cfg) -> str | None:
    """None when hubctl's lock is free now, else who holds it."""
    lock = jobs.JobLock(cfg.jobs.lock_dir)
    try:
        if lock.acquire("wal-check"):
            lock.release()
            return None
    except OSError:
        return None       # the job itself meets the same error, records and alerts it
    return lock.holder()


def archiving_problem(cfg) -> str | None:
    """What pg_stat_archiver says is wrong with archiving now (backup.archiving_problem), or
    why it could not be asked; None when archiving keeps up."""
    try:
        conn = db.connect(cfg, "wal-check", readonly=True)
        try:
            with db.transaction(conn) as cur:
                cur.execute(backup.ARCHIVER_SQL)
                row = cur.fetchone()
        finally:
            conn.close()
    except Exception as exc:            # any failure means: do not repair now
        return f"pg_stat_archiver could not be read ({db.describe_error(exc)[0]})"
    return backup.archiving_problem(row)


def repair(args, cfg, today, repo: int, result: dict, log: jobs.Logger, run_job, clock,
           archiving=archiving_problem) -> bool:
    """A new full backup in a repository whose archive has a hole since its newest backup, when
    it is safe (why_not_repair); the backup runs as the scheduled job does: lock, run record,
    alert on failure. False when it ran and failed."""
    name, kind = REPAIR_JOBS[repo]
    state_path = repair_state_path(args.textfile)
    state = read_state(state_path)
    failed_at = (state.get(str(repo)) or {}).get("failed_at")
    holes = result["gaps"]["newest_backup"]
    reason = why_not_repair(result, archiving(cfg) if holes else None, failed_at, clock(),
                            args.repair_retry_hours, _lock_holder(cfg) if holes else None)
    if reason:
        if holes:
            log.line("repair", repo=repo, outcome="skipped", why=reason)
        return True
    log.line("repair", repo=repo, backup_job=name, outcome="started",
             why=f"{len(holes)} segment(s) missing since the newest backup")
    rc = run_job(name, cfg, today, args.dry_run, backup.body(argparse.Namespace(
        backup_kind=kind, stanza=args.stanza)),
        argv=["wal-check", "--repair-repo", str(repo), f"(missing_since_newest={len(holes)})"])
    if rc == jobs.EXIT_OK or args.dry_run:
        state.pop(str(repo), None)
    else:
        state[str(repo)] = {"failed_at": clock(), "exit": rc}
    if not args.dry_run:
        try:
            write_atomic(state_path, json.dumps(state) + "\n")
        except OSError as exc:
            log.line("repair", repo=repo, outcome=jobs.FAILED, error=f"state file: {exc}")
    log.line("repair", repo=repo, backup_job=name, exit=rc,
             outcome=jobs.OK if rc in (jobs.EXIT_OK, jobs.EXIT_ATTENTION) else jobs.FAILED)
    return rc in (jobs.EXIT_OK, jobs.EXIT_ATTENTION)
