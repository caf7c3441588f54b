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
