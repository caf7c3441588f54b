"""Backup jobs: pgBackRest run through the shared job wrapper (jobs.run_job).

    hubctl backup full|incr [--stanza S]     to repo1 (on the hub), then expire repo1
    hubctl backup offsite [--stanza S]       full to repo2 (on the off-site host, which holds
                                             repo2: pgBackRest backs up only where its
                                             repository is), then expire repo2
    hubctl backup offsite-incr [--stanza S]  incremental to repo2 (the off-site host, weekly):
                                             a restore from repo2 replays at most a week of
                                             WAL, not a month
    hubctl backup expire [--repo N]          apply the repository's retention
    hubctl backup verify [--repo N]          pgbackrest verify; its text report is read, since
                                             its exit code alone does not say every file is good
    hubctl backup snapshot                   a dated copy of repo2 that the hub cannot reach (run
                                             on the off-site host: hub-repo-snapshot take, as
                                             root through sudo, docs/decisions.md)
    hubctl backup-status [--json]            age of the newest backup per repository, read from
                                             `pgbackrest info --output=json` (read-only)

The jobs run as the maintenance user and call pgBackRest as postgres through sudo, with the
exact command lines the roles' sudoers files allow (built here and nowhere else). No secret is
ever on a command line: the off-site passphrase lives in that host's pgbackrest.conf.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import time
from typing import Callable

from hubctl import drill, jobs

PGBACKREST = "/usr/bin/pgbackrest"
SUDO = ("/usr/bin/sudo", "-n", "-u", "postgres")
DEFAULT_STANZA = "hub"
LOCAL_REPO, OFFSITE_REPO = 1, 2
KINDS = ("full", "incr", "offsite", "offsite-incr", "expire", "verify", "snapshot")
# The backup_repo role's tool and the one sudo line its sudoers file allows the jobs' user.
SNAPSHOT_ARGV = ("/usr/bin/sudo", "-n", "/usr/local/sbin/hub-repo-snapshot", "take")
# backup-status calls a repository stale when its newest good backup is older than this:
# repo1 has a backup every day (26 h leaves two hours for a slow run), repo2 one a week (the
# Sunday incremental; the RTO from repo2 counts on at most a week of WAL to replay).
DEFAULT_MAX_AGE_HOURS = {LOCAL_REPO: 26, OFFSITE_REPO: 7 * 24 + 26}
OUTPUT_TAIL = 600
# `info` contacts every repository. With the off-site TLS server unreachable, pgBackRest's
# default (io-timeout 60 s, ten connection retries) held it for three minutes, so each minute's
# hubctl metrics overlapped the next and every hub alert was late during an off-site outage.
# 5 s bounds it at about 15 s (seen on 2.55: three times io-timeout), and the unreachable
# repository is still reported, in error. The subprocess timeout is the backstop, under the
# minute between two metrics runs.
INFO_IO_TIMEOUT = 5
INFO_TIMEOUT = 30


class PgBackRestError(jobs.JobAbort):
    """pgBackRest failed or reported a problem; the message says what it printed."""


# --------------------------------------------------------------------------- command lines

def command(stanza: str, *args: str) -> list[str]:
    return [*SUDO, PGBACKREST, f"--stanza={stanza}", *args]


def backup_argv(stanza: str, repo: int, kind: str) -> list[str]:
    return command(stanza, f"--repo={repo}", f"--type={kind}", "backup")


def expire_argv(stanza: str, repo: int) -> list[str]:
    return command(stanza, f"--repo={repo}", "expire")


def verify_argv(stanza: str, repo: int) -> list[str]:
    # --verbose: without it a good repository prints nothing, which cannot be told from a
    # verify that checked nothing.
    return command(stanza, f"--repo={repo}", "--output=text", "--verbose", "verify")


def info_argv(stanza: str) -> list[str]:
    return command(stanza, f"--io-timeout={INFO_IO_TIMEOUT}", "--output=json", "info")


def run_pgbackrest(argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              cwd="/", check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PgBackRestError(f"pgbackrest {argv[-1]} did not finish within {timeout} s") from None


def tail(text: str, size: int = OUTPUT_TAIL) -> str:
    return " ".join((text or "").split())[-size:]


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        said = tail(proc.stderr) or tail(proc.stdout) or "no output"
        raise PgBackRestError(f"pgbackrest {what} exited {proc.returncode}: {said}")


# --------------------------------------------------------------------------- reading output

def verify_problems(text: str) -> list[str]:
    """The problems in `pgbackrest verify --output=text`; [] when every status line is ok.

    The report has one `status: ok|error` line per stanza, followed by what is wrong. No status
    line at all is a problem too: a verify that checked nothing must not pass.
    """
    statuses = [line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.strip().startswith("status:")]
    if not statuses:
        return [f"verify printed no status line: {tail(text) or 'no output'}"]
    if all(s == "ok" for s in statuses):
        return []
    return [tail(text)]


def parse_info(text: str, stanza: str) -> dict:
    """The stanza's entry of `pgbackrest info --output=json`."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PgBackRestError(f"pgbackrest info printed no JSON: {exc}") from None
    for entry in data if isinstance(data, list) else []:
        if entry.get("name") == stanza:
            return entry
    raise PgBackRestError(f"pgbackrest info knows no stanza {stanza!r}")


def repo_summary(info: dict, now: float,
                 max_age_hours: dict[int, int] | None = None) -> list[dict]:
    """Per repository: its status, newest good backup (any type) and full, WAL range, and
    whether it is healthy: status ok and a backup younger than its maximum age."""
    limits = {**DEFAULT_MAX_AGE_HOURS, **(max_age_hours or {})}
    repos = info.get("repo") or []
    out = []
    for repo in repos:
        key = repo.get("key")
        backups = [b for b in info.get("backup") or []
                   if (b.get("database") or {}).get("repo-key") == key and not b.get("error")]
        backups.sort(key=lambda b: (b.get("timestamp") or {}).get("stop") or 0)
        fulls = [b for b in backups if b.get("type") == "full"]
        archive = [a for a in info.get("archive") or []
                   if (a.get("database") or {}).get("repo-key") == key]
        newest = backups[-1] if backups else None
        age_h = None
        if newest is not None:
            age_h = round((now - newest["timestamp"]["stop"]) / 3600, 1)
        status = repo.get("status") or {}
        problems = []
        if status.get("code") not in (0, None):
            problems.append(f"status {status.get('code')}: {status.get('message')}")
        limit = limits.get(key)
        if newest is None:
            problems.append("no backup")
        elif limit is not None and age_h > limit:
            problems.append(f"newest backup is {age_h} h old (more than {limit} h)")
        full_info = (fulls[-1].get("info") or {}) if fulls else {}
        out.append({
            "repo": key,
            "cipher": repo.get("cipher"),
            "status": status.get("message"),
            "backups": len(backups),
            "fulls": len(fulls),
            "newest": _backup_brief(newest, now),
            "newest_full": _backup_brief(fulls[-1] if fulls else None, now),
            # What the newest full takes in the repository (compressed): about what the next
            # full needs free there, as expire removes the oldest only after it succeeds.
            "newest_full_repo_bytes": (full_info.get("repository") or {}).get("size"),
            "wal_min": archive[-1].get("min") if archive else None,
            "wal_max": archive[-1].get("max") if archive else None,
            "max_age_hours": limit,
            "healthy": not problems,
            "problems": problems,
        })
    return out


def _backup_brief(b: dict | None, now: float) -> dict | None:
    if b is None:
        return None
    stop = b["timestamp"]["stop"]
    return {"label": b.get("label"), "type": b.get("type"),
            "stopped": _dt.datetime.fromtimestamp(stop).astimezone().isoformat(timespec="seconds"),
            "age_hours": round((now - stop) / 3600, 1)}


def status_text(stanza: str, summary: list[dict]) -> str:
    lines = [f"pgBackRest stanza {stanza}"]
    if not summary:
        lines.append("  no repository configured")
    for r in summary:
        n, f = r["newest"], r["newest_full"]
        lines.append(f"  repo{r['repo']}: {'ok' if r['healthy'] else 'PROBLEM'}"
                     f" (status: {r['status']}, cipher: {r['cipher']})")
        lines.append(f"    newest backup: {n['label']} {n['type']}, {n['age_hours']} h ago"
                     if n else "    newest backup: none")
        lines.append(f"    newest full:   {f['label']}, {f['age_hours']} h ago, "
                     f"{r['fulls']} full(s), {r['backups']} backup(s) in all"
                     if f else "    newest full:   none")
        lines.append(f"    WAL archived:  {r['wal_min'] or '-'} .. {r['wal_max'] or '-'}")
        for p in r["problems"]:
            lines.append(f"    problem: {p}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- job bodies

def read_info(stanza: str) -> dict:
    """The stanza's `pgbackrest info`; PgBackRestError if it fails (backup-status, metrics)."""
    proc = run_pgbackrest(info_argv(stanza), timeout=INFO_TIMEOUT)
    _check(proc, "info")
    return parse_info(proc.stdout, stanza)


def _step_pgbackrest(job: jobs.Job, name: str, argv: list[str], **fields) -> None:
    with job.step(name, **fields) as st:
        if job.dry_run:
            st.outcome = jobs.DRY_RUN
            st.set(command=" ".join(argv[len(SUDO):]))
            return
        _check(run_pgbackrest(argv), name)


ARCHIVER_SQL = """
    SELECT last_archived_wal, last_archived_time, last_failed_wal, last_failed_time,
           last_failed_time IS NOT NULL
           AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)
    FROM pg_stat_archiver"""


def archiving_problem(row) -> str | None:
    """What is wrong with WAL archiving, from pg_stat_archiver; None when it keeps up."""
    archived_wal, archived_at, failed_wal, failed_at, failing = row
    if not failing:
        return None
    return (f"WAL archiving is failing: {failed_wal} failed at {failed_at}, last archived "
            f"{archived_wal or '-'} at {archived_at or '-'}. A repository is unreachable; its WAL "
            "queues up to archive-push-queue-max and is then dropped (see "
            "/var/log/pgbackrest/*archive-push-async.log)")


def newest_backup_problem(info: dict, repo: int) -> str | None:
    """pgBackRest finishes a backup that found invalid page checksums, with only a warning;
    info marks it with error=true. That backup must not pass as good."""
    mine = [b for b in info.get("backup") or []
            if (b.get("database") or {}).get("repo-key") == repo]
    if not mine:
        return f"repo{repo} has no backup after the backup command"
    newest = max(mine, key=lambda b: (b.get("timestamp") or {}).get("stop") or 0)
    if newest.get("error"):
        return (f"backup {newest.get('label')} in repo{repo} found invalid page checksums (data "
                f"corruption): pgbackrest --stanza={info.get('name')} --set={newest.get('label')} info "
                "lists the files")
    return None


def backup(job: jobs.Job, stanza: str, repo: int, kind: str) -> None:
    """A backup of `kind` to `repo`, the repository's expire, a check of the new backup
    (page checksums) and, on the hub, of WAL archiving. The live partitions' row counts go to
    hub_backup_manifests first, for DR drills to check a restored copy against."""
    drill.write_manifest(job)
    _step_pgbackrest(job, "backup", backup_argv(stanza, repo, kind), repo=repo, type=kind)
    _step_pgbackrest(job, "expire", expire_argv(stanza, repo), repo=repo)
    with job.step("info", repo=repo) as st:
        info = read_info(stanza)
        summary = {r["repo"]: r for r in repo_summary(info, time.time())}
        newest = (summary.get(repo) or {}).get("newest")
        st.set(label=newest and newest["label"], backups=summary.get(repo, {}).get("backups"))
        if not job.dry_run:
            problem = newest_backup_problem(info, repo)
            if problem:
                raise PgBackRestError(problem)
    if repo == LOCAL_REPO:
        # The hub's jobs also watch archiving: an unreachable off-site host shows here first.
        with job.step("archiving") as st:
            with job.conn.cursor() as cur:
                cur.execute(ARCHIVER_SQL)
                row = cur.fetchone()
            job.conn.rollback()
            st.set(last_archived=row[0])
            problem = archiving_problem(row)
            if problem:
                st.need_attention(problem)


def expire(job: jobs.Job, stanza: str, repo: int) -> None:
    _step_pgbackrest(job, "expire", expire_argv(stanza, repo), repo=repo)


def verify(job: jobs.Job, stanza: str, repo: int) -> None:
    argv = verify_argv(stanza, repo)
    with job.step("verify", repo=repo) as st:
        if job.dry_run:
            st.outcome = jobs.DRY_RUN
            st.set(command=" ".join(argv[len(SUDO):]))
            return
        proc = run_pgbackrest(argv)
        problems = verify_problems(proc.stdout)
        if proc.returncode != 0 and not problems:
            problems = [f"exit {proc.returncode}: {tail(proc.stderr) or tail(proc.stdout)}"]
        if problems:
            raise PgBackRestError(f"pgbackrest verify repo{repo}: " + "; ".join(problems))


def snapshot(job: jobs.Job) -> None:
    """hub-repo-snapshot take: its JSON line says what the snapshot holds. A snapshot of a
    repo2 that lists no full backup, or lost a full its retention keeps, is taken all the same
    (it is what repo2 is), but the run needs attention: the snapshots that still hold those
    fulls are kept, and a restore uses them."""
    argv = list(SNAPSHOT_ARGV)
    with job.step("snapshot", repo=OFFSITE_REPO) as st:
        if job.dry_run:
            st.outcome = jobs.DRY_RUN
            st.set(command=" ".join(argv[2:]))
            return
        proc = run_pgbackrest(argv)
        if proc.returncode != 0:
            raise PgBackRestError(f"hub-repo-snapshot take exited {proc.returncode}: "
                                  f"{tail(proc.stderr) or tail(proc.stdout) or 'no output'}")
        try:
            done = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise PgBackRestError(f"hub-repo-snapshot take printed no JSON: {tail(proc.stdout)}") from None
        lost = done.get("lost_fulls", [])
        st.set(snapshot=done["snapshot"], backups=len(done["backups"]), copied=done["copied"],
               linked=done["linked"], bytes_copied=done["bytes_copied"],
               pruned=len(done["pruned"]), lost_fulls=",".join(lost) or "-")
        if not done["restorable"] or lost:
            what = ("repo2 lists no full backup" if not done["restorable"] else
                    f"repo2 no longer lists full backup(s) {', '.join(lost)} that its retention keeps")
            st.need_attention(f"{what}: if nobody removed them on purpose, the hub may be "
                              "compromised; `hub-repo-snapshot list` names the snapshots that hold "
                              "them, kept whatever their age (docs/runbook-dr.md)")


# --------------------------------------------------------------------------- command line

def add_arguments(p: argparse.ArgumentParser,
                  global_options: Callable[[argparse.ArgumentParser, bool], None]) -> None:
    sub = p.add_subparsers(dest="backup_kind", metavar="KIND", required=True)
    helps = {
        "full": "full backup to repo1 (local), then expire repo1",
        "incr": "incremental backup to repo1 (local), then expire repo1",
        "offsite": "full backup to repo2 (run on the off-site host), then expire repo2",
        "offsite-incr": "incremental backup to repo2 (run on the off-site host), then expire "
                        "repo2",
        "expire": "apply a repository's retention (--repo, default 1)",
        "verify": "verify a repository (--repo, default 1); fails unless its report says ok",
        "snapshot": "copy repo2 into the off-site host's own snapshots (run on the off-site "
                    "host), which no credential of the hub reaches",
    }
    for kind in KINDS:
        s = sub.add_parser(kind, help=helps[kind], description=helps[kind])
        global_options(s, True)
        s.add_argument("--stanza", default=DEFAULT_STANZA, help="pgBackRest stanza (default hub)")
        if kind in ("expire", "verify"):
            s.add_argument("--repo", type=int, choices=(LOCAL_REPO, OFFSITE_REPO),
                           default=LOCAL_REPO, help="repository (default 1)")
        s.set_defaults(job_name=f"backup-{kind}")


def body(args: argparse.Namespace) -> Callable[[jobs.Job], None]:
    kind, stanza = args.backup_kind, args.stanza
    if kind in ("full", "incr"):
        return lambda job: backup(job, stanza, LOCAL_REPO, kind)
    if kind == "offsite":
        return lambda job: backup(job, stanza, OFFSITE_REPO, "full")
    if kind == "offsite-incr":
        return lambda job: backup(job, stanza, OFFSITE_REPO, "incr")
    if kind == "expire":
        return lambda job: expire(job, stanza, args.repo)
    if kind == "snapshot":
        return snapshot
    return lambda job: verify(job, stanza, args.repo)


def status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--stanza", default=DEFAULT_STANZA, help="pgBackRest stanza (default hub)")


def status_run(args: argparse.Namespace, cfg, today: _dt.date) -> int:
    """Exit 0 when every repository is healthy, 1 otherwise (for monitoring)."""
    log = jobs.Logger("backup-status")
    try:
        summary = repo_summary(read_info(args.stanza), time.time())
    except (PgBackRestError, OSError) as exc:
        log.line("info", outcome=jobs.FAILED, error=str(exc))
        return jobs.EXIT_FAILED
    if args.json:
        print(json.dumps({"stanza": args.stanza, "repos": summary}, indent=2), flush=True)
    else:
        print(status_text(args.stanza, summary), flush=True)
    return jobs.EXIT_OK if summary and all(r["healthy"] for r in summary) else jobs.EXIT_FAILED
