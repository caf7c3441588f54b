"""`hubctl wal-check`: is each repository's WAL archive continuous? Read-only.

    hubctl wal-check [--textfile PATH] [--stanza S] [--repo N ...] [--settle-seconds S]

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
before the one ahead of it.

The result is a node-exporter textfile written atomically (hub_wal.prom beside hub.prom), and
one log line per repository that names the first run of missing segments in each range
(first_gap_since_newest, first_gap_since_oldest). Exit 0 when every archive is
continuous, 3 when a hole was found, 1 when a repository could not be checked.
"""

from __future__ import annotations

import argparse
import os
import re
import time

from hubctl import backup, jobs
from hubctl.metrics import Metrics, render, write_atomic

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
    if not 0 <= args.settle_seconds <= 600:
        raise ValueError("--settle-seconds: from 0 to 600")
    mb = args.wal_segment_mb
    if mb < 1 or mb > 1024 or mb & (mb - 1):
        raise ValueError("--wal-segment-mb: a power of two from 1 to 1024 (PostgreSQL's "
                         "wal_segment_size)")


def check_repo(stanza: str, repo: int, p: dict, per_log: int, settle: float,
               lister=list_segments, sleep=time.sleep) -> dict:
    held = held_positions(lister(stanza, repo), p["archive_id"], per_log)
    found = gaps(p, held, per_log)
    if any(found.values()):
        sleep(settle)
        again = held_positions(lister(stanza, repo), p["archive_id"], per_log)
        found = persistent(found, gaps(p, again, per_log))
        held = again
    return {"held": len(held), "gaps": found}


def run(args: argparse.Namespace, _cfg, _today, read_info=backup.read_info,
        lister=list_segments, sleep=time.sleep) -> int:
    log = jobs.Logger("wal-check")
    started = time.monotonic()
    per_log = segments_per_log(args.wal_segment_mb)
    m = Metrics()
    up: dict[int, bool] = {}
    holes = False
    try:
        info = read_info(args.stanza)
    except jobs.JobAbort as exc:
        info = None
        log.line("info", outcome=jobs.FAILED, error=str(exc))
    for repo in args.repo:
        labels = {"repo": str(repo)}
        if info is None:
            up[repo] = False
            continue
        try:
            p = plan(info, repo)
            if p is None:
                log.line(f"repo{repo}", outcome=jobs.OK, note="no good backup: nothing to check")
                up[repo] = True
                continue
            result = check_repo(args.stanza, repo, p, per_log, args.settle_seconds, lister, sleep)
        except jobs.JobAbort as exc:
            up[repo] = False
            log.line(f"repo{repo}", outcome=jobs.FAILED, error=str(exc))
            continue
        up[repo] = True
        m.gauge("hub_wal_archive_segments", "WAL segments held in the repository's current archive",
                result["held"], **labels)
        for since in RANGES:
            m.gauge("hub_wal_archive_missing_segments",
                    "WAL segments missing in the repository's archive since its newest or its "
                    "oldest good backup's first segment", len(result["gaps"][since]),
                    since=since, **labels)
        gap = result["gaps"]["oldest_backup"]
        holes = holes or bool(gap)
        fields = {"archive": p["archive_id"], "held": result["held"],
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
    if not all(up.values()):
        return jobs.EXIT_FAILED
    return jobs.EXIT_ATTENTION if holes else jobs.EXIT_OK
