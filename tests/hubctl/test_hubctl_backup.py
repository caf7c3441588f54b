"""hubctl's backup commands: the command lines the sudoers rules allow, the reading of
pgbackrest verify and info output, and the command line. No pgBackRest needed."""

import json
import re
from pathlib import Path

import pytest

from hubctl import backup, cli, walcheck

NOW = 1_800_000_000.0


def _sudoers_commands(role: str, stanza: str, user: str) -> set[str]:
    """The command lines a role's sudoers template allows, rendered by hand."""
    text = (Path(__file__).resolve().parents[2] / "roles" / role / "templates" / "sudoers.j2").read_text()
    alias = text.split("Cmnd_Alias HUB_PGBACKREST =", 1)[1].split("\nDefaults", 1)[0]
    pgbr = f"/usr/bin/pgbackrest --stanza={stanza}"
    lines = {re.sub(r"\{\{ pgbr \}\}", pgbr, c.strip()) for c in alias.replace("\\\n", "").split(",")}
    return {line.replace("{{ pgbackrest_stanza }}", stanza).replace("{{ backup_repo_stanza }}", stanza)
            for line in lines}


def _cmdline(argv):
    assert list(argv[:len(backup.SUDO)]) == list(backup.SUDO)
    return " ".join(argv[len(backup.SUDO):])


def test_hub_commands_are_exactly_those_sudoers_allows():
    allowed = _sudoers_commands("pgbackrest", "hub", "hubmaint")
    used = {_cmdline(backup.backup_argv("hub", 1, "full")), _cmdline(backup.backup_argv("hub", 1, "incr")),
            _cmdline(backup.expire_argv("hub", 1)), _cmdline(backup.verify_argv("hub", 1)),
            _cmdline(backup.info_argv("hub")),
            _cmdline(walcheck.list_argv("hub", 1)), _cmdline(walcheck.list_argv("hub", 2))}
    assert used == allowed


def test_offsite_commands_are_exactly_those_sudoers_allows():
    allowed = _sudoers_commands("backup_repo", "hub", "hubmaint")
    used = {_cmdline(backup.backup_argv("hub", 2, "full")), _cmdline(backup.backup_argv("hub", 2, "incr")),
            _cmdline(backup.expire_argv("hub", 2)),
            _cmdline(backup.verify_argv("hub", 2)), _cmdline(backup.info_argv("hub")),
            _cmdline(walcheck.list_argv("hub", 2))}
    assert used == allowed


def test_the_snapshot_command_is_the_one_root_line_sudoers_allows():
    text = (Path(__file__).resolve().parents[2] / "roles/backup_repo/templates/sudoers.j2").read_text()
    root_lines = [line for line in text.splitlines() if "ALL=(root)" in line]
    assert root_lines == ["{{ backup_repo_job_user }} ALL=(root) NOPASSWD: " + " ".join(backup.SNAPSHOT_ARGV[2:])]
    assert list(backup.SNAPSHOT_ARGV[:2]) == ["/usr/bin/sudo", "-n"]


@pytest.mark.parametrize("text, ok", [
    ("stanza: hub\nstatus: ok\n", True),
    ("stanza: hub\nstatus: error\n  backup: 20261126-010000F_20261127-010000I, invalid files: 1\n", False),
    ("", False),                                  # nothing verified is not a pass
    ("stanza: hub\nstatus: ok\nstanza: other\nstatus: error\n", False),
])
def test_verify_is_judged_by_its_report(text, ok):
    assert (backup.verify_problems(text) == []) is ok


def _info(backups, repos=((1, 0), (2, 0))):
    return {"name": "hub",
            "repo": [{"key": k, "cipher": "none" if k == 1 else "aes-256-cbc",
                      "status": {"code": c, "message": "ok" if c == 0 else "no valid backups"}}
                     for k, c in repos],
            "backup": [{"label": label, "type": kind, "error": err,
                        "database": {"id": 1, "repo-key": repo},
                        "timestamp": {"start": stop - 60, "stop": stop}}
                       for label, kind, repo, stop, err in backups],
            "archive": [{"database": {"id": 1, "repo-key": 1}, "min": "000000010000000000000001",
                         "max": "000000010000000000000009"}]}


def test_summary_gives_the_newest_backup_per_repository():
    info = _info([("F1", "full", 1, NOW - 30 * 3600, False), ("I1", "incr", 1, NOW - 2 * 3600, False),
                  ("F2", "full", 2, NOW - 10 * 24 * 3600, False), ("I2", "incr", 2, NOW - 6 * 24 * 3600, False)])
    summary = {r["repo"]: r for r in backup.repo_summary(info, NOW)}
    assert summary[1]["newest"]["label"] == "I1" and summary[1]["newest"]["age_hours"] == 2.0
    assert summary[1]["newest_full"]["label"] == "F1"
    assert summary[1]["wal_max"] == "000000010000000000000009"
    assert summary[1]["healthy"] and summary[2]["healthy"]
    assert summary[2]["cipher"] == "aes-256-cbc"


def test_repo2_is_stale_once_a_weekly_incremental_is_missed():
    """repo2's newest backup of any type must be at most a week and a day old: the RTO from
    repo2 counts on replaying no more than a week of WAL."""
    for age_days, healthy in ((7, True), (9, False)):
        info = _info([("F1", "full", 1, NOW - 3600, False), ("F2", "full", 2, NOW - age_days * 24 * 3600, False)])
        summary = {r["repo"]: r for r in backup.repo_summary(info, NOW)}
        assert summary[2]["healthy"] is healthy, (age_days, summary[2])


def test_summary_gives_the_newest_fulls_size_in_the_repository():
    info = _info([("F1", "full", 1, NOW - 9 * 24 * 3600, False), ("F2", "full", 1, NOW - 2 * 24 * 3600, False),
                  ("I1", "incr", 1, NOW - 3600, False), ("F3", "full", 2, NOW - 3600, False)])
    sizes = {"F1": 900, "F2": 1200, "I1": 50}
    for b in info["backup"]:
        if b["label"] in sizes:
            b["info"] = {"size": 10 * sizes[b["label"]], "delta": 10 * sizes[b["label"]],
                         "repository": {"size": sizes[b["label"]], "delta": sizes[b["label"]]}}
    summary = {r["repo"]: r for r in backup.repo_summary(info, NOW)}
    # The newest full, not the newest backup, nor the first full, nor the uncompressed size.
    assert summary[1]["newest_full_repo_bytes"] == 1200
    # pgBackRest gave no size for repo2's full: none is reported rather than a guess.
    assert summary[2]["newest_full_repo_bytes"] is None


def test_summary_flags_stale_missing_and_failed_backups():
    info = _info([("F1", "full", 1, NOW - 27 * 3600, False), ("I1", "incr", 1, NOW - 3600, True)],
                 repos=((1, 0), (2, 2)))
    summary = {r["repo"]: r for r in backup.repo_summary(info, NOW)}
    # The backup that ended in error does not count: the newest good one is 27 h old.
    assert not summary[1]["healthy"] and "27.0 h old" in summary[1]["problems"][0]
    assert not summary[2]["healthy"] and "no backup" in summary[2]["problems"]
    assert "repo2: PROBLEM" in backup.status_text("hub", list(summary.values()))


def test_info_without_the_stanza_is_an_error():
    with pytest.raises(backup.PgBackRestError):
        backup.parse_info(json.dumps([{"name": "other"}]), "hub")
    with pytest.raises(backup.PgBackRestError):
        backup.parse_info("not json", "hub")


@pytest.mark.parametrize("argv, job, kind", [
    (["backup", "full"], "backup-full", "full"),
    (["backup", "incr", "--stanza", "hub", "--dry-run"], "backup-incr", "incr"),
    (["backup", "offsite"], "backup-offsite", "offsite"),
    (["backup", "offsite-incr", "--wait", "14400"], "backup-offsite-incr", "offsite-incr"),
    (["backup", "verify", "--repo", "2"], "backup-verify", "verify"),
    (["backup", "snapshot", "--wait", "14400"], "backup-snapshot", "snapshot"),
])
def test_command_line_names_each_job(argv, job, kind):
    args = cli.build_parser().parse_args(argv)
    assert args.job_name == job and args.backup_kind == kind


def test_a_third_repository_is_bad_usage():
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["backup", "verify", "--repo", "3"])
    assert exc.value.code == 2


def test_archiving_is_failing_only_when_the_last_failure_is_newer():
    t1, t2 = "2026-11-27 01:00:00+09", "2026-11-27 01:05:00+09"
    assert backup.archiving_problem(("0001", t2, "0000", t1, False)) is None
    problem = backup.archiving_problem(("0001", t1, "0002", t2, True))
    assert problem and "0002 failed" in problem and "archive-push-queue-max" in problem


def test_a_backup_with_invalid_page_checksums_is_a_problem():
    good = _info([("F1", "full", 1, NOW - 60, False)])
    assert backup.newest_backup_problem(good, 1) is None
    bad = _info([("F1", "full", 1, NOW - 3600, False), ("F1_I2", "incr", 1, NOW - 60, True)])
    assert "F1_I2" in backup.newest_backup_problem(bad, 1)
    assert "no backup" in backup.newest_backup_problem(good, 2)


def test_a_pgbackrest_that_hangs_is_stopped_and_reported():
    with pytest.raises(backup.PgBackRestError, match="did not finish within 0.2 s"):
        backup.run_pgbackrest(["/bin/sleep", "5"], timeout=0.2)


def test_the_weekly_off_site_incremental_goes_to_repo2(monkeypatch):
    """backup offsite-incr: an incremental into repo2 with the command line the off-site
    sudoers allows, then repo2's expire."""
    ran = []
    monkeypatch.setattr(backup, "backup", lambda job, stanza, repo, kind: ran.append((stanza, repo, kind)))
    args = cli.build_parser().parse_args(["backup", "offsite-incr"])
    backup.body(args)(None)
    assert ran == [("hub", backup.OFFSITE_REPO, "incr")]
    assert backup.backup_argv("hub", 2, "incr")[-4:] == ["--stanza=hub", "--repo=2", "--type=incr", "backup"]
