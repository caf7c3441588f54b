"""hubctl wal-check: reading repo-ls listings, the gap arithmetic in both ranges, the second
listing that forgives segments in flight, and what the textfile and exit code say. pgBackRest
itself runs in the site scenario (test_2_monitoring.py, test_6_backup.py)."""

import pytest

from hubctl import cli, jobs, walcheck

PER_LOG = walcheck.segments_per_log(16)
ARCHIVE = "15-1"


def seg(pos: int, timeline: str = "00000001") -> str:
    return walcheck.segment_name(pos, PER_LOG, timeline)


def listing(positions, archive=ARCHIVE, timeline="00000001", partial=()) -> str:
    """What `pgbackrest repo-ls --recurse archive/hub` prints: paths, archive.info, a history
    file, a .backup file and the segments."""
    lines = ["archive.info", "archive.info.copy", archive, f"{archive}/00000002.history"]
    for p in sorted(positions):
        name = seg(p, timeline)
        lines.append(f"{archive}/{name[:16]}")
        suffix = ".partial" if p in partial else ""
        lines.append(f"{archive}/{name[:16]}/{name}{suffix}-{'ab' * 20}.lz4")
    lines.append(f"{archive}/{seg(min(positions or [0]))[:16]}/{seg(min(positions or [0]))}.00000028.backup")
    return "\n".join(lines) + "\n"


def backup_entry(repo, start, stop, t, label, db_id=1, error=False, kind="full"):
    return {"label": label, "type": kind, "error": error, "timestamp": {"start": t - 10, "stop": t},
            "archive": {"start": seg(start), "stop": seg(stop)},
            "database": {"id": db_id, "repo-key": repo}}


def info(*backups, archives=None):
    return {"name": "hub", "repo": [{"key": 1}, {"key": 2}],
            "backup": list(backups),
            "archive": archives if archives is not None else [
                {"id": ARCHIVE, "database": {"id": 1, "repo-key": 1}},
                {"id": ARCHIVE, "database": {"id": 1, "repo-key": 2}}]}


# --------------------------------------------------------------------------- names and positions

def test_position_runs_on_across_a_log_boundary_and_back_to_the_name():
    assert walcheck.position("0000000100000000000000FF", PER_LOG) + 1 == \
        walcheck.position("000000010000000100000000", PER_LOG)
    assert seg(walcheck.position("0000000300000002000000A7", PER_LOG)) == "0000000100000002000000A7"


def test_a_segment_that_cannot_exist_with_the_segment_size_is_refused():
    with pytest.raises(walcheck.WalCheckError, match="wal_segment_size"):
        walcheck.position("000000010000000000000100", PER_LOG)


def test_the_listing_yields_segments_of_the_current_archive_only():
    text = listing([1, 2, 3]) + listing([7], archive="13-1")
    assert walcheck.held_positions(text, ARCHIVE, PER_LOG) == {1, 2, 3}


def test_a_partial_segment_and_another_timeline_count_as_held():
    text = listing([4], partial={4}) + listing([5], timeline="00000002")
    assert walcheck.held_positions(text, ARCHIVE, PER_LOG) == {4, 5}


# --------------------------------------------------------------------------- gaps

def test_a_hole_after_the_newest_backup_counts_in_both_ranges():
    p = walcheck.plan(info(backup_entry(1, 10, 11, 100, "old"), backup_entry(1, 20, 20, 200, "new")), 1)
    held = set(range(10, 31)) - {25, 26}
    assert walcheck.gaps(p, held, PER_LOG) == {"newest_backup": [25, 26], "oldest_backup": [25, 26]}


def test_a_hole_before_the_newest_backup_is_older_history_only():
    p = walcheck.plan(info(backup_entry(1, 10, 11, 100, "old"), backup_entry(1, 20, 20, 200, "new")), 1)
    held = set(range(10, 31)) - {15}
    assert walcheck.gaps(p, held, PER_LOG) == {"newest_backup": [], "oldest_backup": [15]}


def test_the_newest_backups_own_segments_must_be_held():
    p = walcheck.plan(info(backup_entry(1, 20, 22, 200, "new")), 1)
    assert walcheck.gaps(p, {20}, PER_LOG)["newest_backup"] == [21, 22]


def test_a_failed_backup_and_another_repositorys_backup_do_not_set_the_range():
    p = walcheck.plan(info(backup_entry(1, 10, 10, 100, "old"), backup_entry(1, 40, 40, 300, "bad", error=True),
                           backup_entry(2, 30, 30, 400, "repo2")), 1)
    assert (p["newest_start"], p["oldest_start"]) == (seg(10), seg(10))


def test_after_an_upgrade_only_the_current_databases_archive_and_backups_count():
    archives = [{"id": "13-1", "database": {"id": 1, "repo-key": 1}},
                {"id": "15-2", "database": {"id": 2, "repo-key": 1}}]
    p = walcheck.plan(info(backup_entry(1, 5, 5, 100, "pg13", db_id=1), backup_entry(1, 40, 40, 200, "pg15", db_id=2),
                           archives=archives), 1)
    assert (p["archive_id"], p["oldest_start"]) == ("15-2", seg(40))


def test_a_repository_without_a_good_backup_has_nothing_to_check():
    assert walcheck.plan(info(backup_entry(1, 10, 10, 100, "bad", error=True)), 1) is None


def test_a_repository_whose_archive_pgbackrest_does_not_list_cannot_be_judged():
    with pytest.raises(walcheck.WalCheckError, match="no archive"):
        walcheck.plan(info(backup_entry(1, 10, 10, 100, "b"), archives=[]), 1)


def test_only_holes_still_there_in_the_second_listing_are_reported():
    first = {"newest_backup": [25, 26, 30], "oldest_backup": [15, 25, 26, 30]}
    again = {"newest_backup": [25, 26], "oldest_backup": [15, 25, 26]}
    assert walcheck.persistent(first, again) == {"newest_backup": [25, 26], "oldest_backup": [15, 25, 26]}


def test_the_first_run_of_missing_segments_is_named():
    assert walcheck.describe([25], PER_LOG) == seg(25)
    assert walcheck.describe([25, 26, 27, 40], PER_LOG) == f"{seg(25)}..{seg(27)} (3)"


# --------------------------------------------------------------------------- the command

def run(tmp_path, capsys, infos, listings, *extra):
    """Run `hubctl wal-check` with pgBackRest's answers given: infos() for info, and a list of
    listings per repository, served one per call."""
    calls = {1: 0, 2: 0}
    slept = []

    def lister(stanza, repo):
        answers = listings[repo]
        text = answers[min(calls[repo], len(answers) - 1)]
        calls[repo] += 1
        if isinstance(text, Exception):
            raise text
        return text

    parser = cli.build_parser()
    args = parser.parse_args(["wal-check", "--textfile", str(tmp_path / "hub_wal.prom"), *extra])
    walcheck.validate(args, None)
    rc = walcheck.run(args, None, None, read_info=lambda stanza: infos(), lister=lister, sleep=slept.append)
    prom = (tmp_path / "hub_wal.prom").read_text()
    return rc, prom, capsys.readouterr().out, calls, slept


def two_repos():
    return info(backup_entry(1, 10, 10, 100, "r1"), backup_entry(2, 10, 10, 100, "r2"))


def test_continuous_archives_exit_0_and_report_no_missing_segment(tmp_path, capsys):
    rc, prom, out, calls, slept = run(tmp_path, capsys, two_repos,
                                      {1: [listing(range(10, 20))], 2: [listing(range(10, 20))]})
    assert rc == jobs.EXIT_OK and slept == [] and calls == {1: 1, 2: 1}
    assert 'hub_wal_archive_missing_segments{repo="1",since="newest_backup"} 0' in prom
    assert 'hub_wal_archive_missing_segments{repo="2",since="oldest_backup"} 0' in prom
    assert 'hub_wal_check_up{repo="2"} 1' in prom and 'hub_wal_archive_segments{repo="1"} 10' in prom
    assert "hub_wal_check_timestamp_seconds" in prom


def test_a_hole_that_stays_is_reported_with_its_first_segment_and_exit_3(tmp_path, capsys):
    holed = listing(set(range(10, 20)) - {14, 15})
    rc, prom, out, calls, slept = run(tmp_path, capsys, two_repos,
                                      {1: [holed], 2: [listing(range(10, 20))]}, "--settle-seconds", "7")
    assert rc == jobs.EXIT_ATTENTION and slept == [7.0] and calls == {1: 2, 2: 1}
    assert 'hub_wal_archive_missing_segments{repo="1",since="newest_backup"} 2' in prom
    assert 'hub_wal_archive_missing_segments{repo="2",since="newest_backup"} 0' in prom
    assert f"first_gap_since_newest=\"{seg(14)}..{seg(15)} (2)\"" in out and "outcome=attention" in out


def test_a_segment_that_lands_before_the_second_listing_is_not_a_hole(tmp_path, capsys):
    rc, prom, out, calls, slept = run(tmp_path, capsys, two_repos,
                                      {1: [listing({10, 11, 13}), listing({10, 11, 12, 13})],
                                       2: [listing({10})]})
    assert rc == jobs.EXIT_OK and calls[1] == 2
    assert 'hub_wal_archive_missing_segments{repo="1",since="newest_backup"} 0' in prom


def test_an_unreachable_repository_is_check_down_and_the_other_still_reported(tmp_path, capsys):
    rc, prom, out, calls, slept = run(tmp_path, capsys, two_repos,
                                      {1: [listing(range(10, 12))],
                                       2: [walcheck.WalCheckError("pgbackrest repo-ls of repo2 exited 103")]})
    assert rc == jobs.EXIT_FAILED
    assert 'hub_wal_check_up{repo="2"} 0' in prom and 'hub_wal_check_up{repo="1"} 1' in prom
    assert 'repo="2",since' not in prom
    assert "repo2" in out and "exited 103" in out


def test_info_failing_marks_every_repository_down_and_still_writes_the_file(tmp_path, capsys):
    def broken():
        raise jobs.JobAbort("pgbackrest info exited 56")
    rc, prom, out, calls, slept = run(tmp_path, capsys, broken, {1: [""], 2: [""]})
    assert rc == jobs.EXIT_FAILED and calls == {1: 0, 2: 0}
    assert 'hub_wal_check_up{repo="1"} 0' in prom and 'hub_wal_check_up{repo="2"} 0' in prom


@pytest.mark.parametrize("extra, message", [
    (["--repo", "0"], "--repo"),
    (["--repo", "1", "--repo", "1"], "--repo"),
    (["--settle-seconds", "-1"], "--settle-seconds"),
    (["--wal-segment-mb", "24"], "power of two"),
    (["--textfile", "/tmp/hub_wal.txt"], "ending in .prom"),
    (["--textfile", "/nonexistent-dir/hub_wal.prom"], "does not exist"),
])
def test_bad_input_is_exit_2_with_the_reason(extra, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["wal-check", "--textfile", str(tmp_path / "hub_wal.prom"), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_a_hole_only_in_older_history_is_logged_as_such_and_not_as_since_the_newest(tmp_path, capsys):
    def older():
        return info(backup_entry(1, 10, 10, 100, "old"), backup_entry(1, 20, 20, 200, "new"),
                    backup_entry(2, 10, 10, 100, "r2"))
    rc, prom, out, calls, slept = run(tmp_path, capsys, older,
                                      {1: [listing(set(range(10, 25)) - {15})], 2: [listing(range(10, 25))]})
    assert rc == jobs.EXIT_ATTENTION
    assert 'hub_wal_archive_missing_segments{repo="1",since="newest_backup"} 0' in prom
    assert 'hub_wal_archive_missing_segments{repo="1",since="oldest_backup"} 1' in prom
    assert f"first_gap_since_oldest={seg(15)}" in out and "first_gap_since_newest" not in out


def test_two_repositories_with_holes_wait_once_not_twice(tmp_path, capsys):
    holed = listing(set(range(10, 20)) - {14})
    rc, prom, out, calls, slept = run(tmp_path, capsys, two_repos, {1: [holed], 2: [holed]},
                                      "--settle-seconds", "5")
    assert rc == jobs.EXIT_ATTENTION and slept == [5.0] and calls == {1: 2, 2: 2}
    assert 'hub_wal_archive_missing_segments{repo="2",since="newest_backup"} 1' in prom


def test_a_second_listing_that_fails_marks_that_repository_down(tmp_path, capsys):
    holed = listing(set(range(10, 20)) - {14})
    rc, prom, out, calls, slept = run(tmp_path, capsys, two_repos,
                                      {1: [holed, walcheck.WalCheckError("repo-ls exited 104")],
                                       2: [listing(range(10, 20))]})
    assert rc == jobs.EXIT_FAILED
    assert 'hub_wal_check_up{repo="1"} 0' in prom and 'repo="1",since' not in prom
    assert "exited 104" in out


# --------------------------------------------------------------------------- repair

class FakeJobs:
    """run_job as wal-check calls it: records each call and what hub_wal.prom said then."""

    def __init__(self, textfile, rc=0):
        self.textfile, self.rc, self.calls = textfile, rc, []

    def __call__(self, name, cfg, today, dry_run, body, argv=None):
        self.calls.append({"name": name, "argv": argv, "dry_run": dry_run,
                           "prom": self.textfile.read_text()})
        return self.rc


def repair_run(tmp_path, capsys, listings, *extra, rc=0, now=1_000_000.0, archiving=None,
               infos=two_repos):
    import types
    textfile = tmp_path / "hub_wal.prom"
    fake = FakeJobs(textfile, rc)
    cfg = types.SimpleNamespace(jobs=types.SimpleNamespace(lock_dir=str(tmp_path / "lock")))
    calls = {1: 0, 2: 0}

    def lister(stanza, repo):
        answers = listings[repo]
        calls[repo] += 1
        return answers[min(calls[repo] - 1, len(answers) - 1)]

    args = cli.build_parser().parse_args(["wal-check", "--textfile", str(textfile), *extra])
    walcheck.validate(args, None)
    code = walcheck.run(args, cfg, None, read_info=lambda s: infos(), lister=lister,
                        sleep=lambda s: None, run_job=fake, clock=lambda: now,
                        archiving=lambda cfg: archiving)
    return code, fake.calls, capsys.readouterr().out


HOLED = listing(set(range(10, 20)) - {14, 15})
WHOLE = listing(range(10, 20))


def test_a_hole_since_the_newest_backup_is_repaired_by_the_hosts_full_backup_after_the_file_says_so(tmp_path, capsys):
    rc, calls, out = repair_run(tmp_path, capsys, {1: [HOLED], 2: [WHOLE]}, "--repair-repo", "1")
    assert [c["name"] for c in calls] == ["backup-full"]
    # The hole was in the textfile before the backup started: the alert fires regardless.
    assert 'hub_wal_archive_missing_segments{repo="1",since="newest_backup"} 2' in calls[0]["prom"]
    assert calls[0]["argv"][:3] == ["wal-check", "--repair-repo", "1"]
    assert "step=repair repo=1 backup_job=backup-full outcome=started" in out
    assert "exit=0 outcome=ok" in out
    assert rc == jobs.EXIT_ATTENTION
    assert not (tmp_path / walcheck.REPAIR_STATE).exists() or \
        "1" not in walcheck.read_state(str(tmp_path / walcheck.REPAIR_STATE))


def test_the_offsite_host_repairs_repo2_with_its_offsite_backup(tmp_path, capsys):
    rc, calls, out = repair_run(tmp_path, capsys, {2: [HOLED]}, "--repo", "2", "--repair-repo", "2")
    assert [c["name"] for c in calls] == ["backup-offsite"]


def test_no_hole_no_repair_and_no_line(tmp_path, capsys):
    rc, calls, out = repair_run(tmp_path, capsys, {1: [WHOLE], 2: [WHOLE]}, "--repair-repo", "1")
    assert rc == jobs.EXIT_OK and calls == [] and "step=repair" not in out


def test_a_hole_only_in_the_other_repository_is_not_this_hosts_to_repair(tmp_path, capsys):
    rc, calls, out = repair_run(tmp_path, capsys, {1: [WHOLE], 2: [HOLED]}, "--repair-repo", "1")
    assert rc == jobs.EXIT_ATTENTION and calls == []


def test_no_repair_while_archiving_is_failing(tmp_path, capsys):
    rc, calls, out = repair_run(tmp_path, capsys, {1: [HOLED], 2: [WHOLE]}, "--repair-repo", "1",
                                archiving="WAL archiving is failing: 0000000100000000000000FF")
    assert calls == [] and "outcome=skipped" in out and "archiving has not resumed" in out
    assert rc == jobs.EXIT_ATTENTION


def test_no_repair_while_no_segment_after_the_hole_is_held(tmp_path, capsys):
    """The newest backup's own last segments missing: nothing after the hole arrived yet."""
    def newest_stops_late():
        return info(backup_entry(1, 10, 21, 100, "r1"), backup_entry(2, 10, 10, 100, "r2"))
    rc, calls, out = repair_run(tmp_path, capsys, {1: [listing(range(10, 20))], 2: [WHOLE]},
                                "--repair-repo", "1", infos=newest_stops_late)
    assert calls == [] and "no segment after it is held yet" in out


def test_a_failed_repair_is_exit_1_recorded_and_not_tried_again_before_the_retry_time(tmp_path, capsys):
    rc, calls, out = repair_run(tmp_path, capsys, {1: [HOLED], 2: [WHOLE]}, "--repair-repo", "1",
                                rc=jobs.EXIT_FAILED, now=1_000_000.0)
    assert rc == jobs.EXIT_FAILED and len(calls) == 1 and "outcome=failed" in out
    state = walcheck.read_state(str(tmp_path / walcheck.REPAIR_STATE))
    assert state["1"]["failed_at"] == 1_000_000.0
    rc, calls, out = repair_run(tmp_path, capsys, {1: [HOLED], 2: [WHOLE]}, "--repair-repo", "1",
                                now=1_000_000.0 + 5 * 3600)
    assert calls == [] and "the last repairing backup failed" in out and rc == jobs.EXIT_ATTENTION
    rc, calls, out = repair_run(tmp_path, capsys, {1: [HOLED], 2: [WHOLE]}, "--repair-repo", "1",
                                now=1_000_000.0 + 6 * 3600 + 1)
    assert len(calls) == 1
    assert "1" not in walcheck.read_state(str(tmp_path / walcheck.REPAIR_STATE))


def test_no_repair_while_another_job_holds_the_lock(tmp_path, capsys):
    holder = jobs.JobLock(str(tmp_path / "lock"))
    assert holder.acquire("backup-full")
    try:
        rc, calls, out = repair_run(tmp_path, capsys, {1: [HOLED], 2: [WHOLE]}, "--repair-repo", "1")
    finally:
        holder.release()
    assert calls == [] and "another job holds the lock" in out and "job=backup-full" in out


def test_a_dry_run_says_what_it_would_repair_and_records_nothing(tmp_path, capsys):
    rc, calls, out = repair_run(tmp_path, capsys, {1: [HOLED], 2: [WHOLE]}, "--dry-run", "--repair-repo", "1")
    assert len(calls) == 1 and calls[0]["dry_run"] is True
    assert not (tmp_path / walcheck.REPAIR_STATE).exists()


@pytest.mark.parametrize("extra, message", [
    (["--repair-repo", "3"], "--repair-repo 3"),
    (["--repo", "1", "--repair-repo", "2"], "--repair-repo 2"),
    (["--repair-retry-hours", "0"], "--repair-retry-hours"),
])
def test_bad_repair_input_is_exit_2(extra, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["wal-check", "--textfile", str(tmp_path / "hub_wal.prom"), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
