"""The disaster-recovery drill as an operator runs it (docs/runbook-dr.md): playbooks/dr-drill.yml
onto the scenario's third host, which site.yml never touched. The drill builds it, restores the
hub from the off-site repository (repo2) alone, verifies the copy and writes its report on the
controller. Three drills, in order: the newest point (the report passes, RTO and RPO measured);
a named restore point (the rows after it are absent); and a WAL segment taken out of repo2 (the
drill fails, and its report names the check). Then the promotion mode of a real disaster: refused
without the old primary fenced, and with it, the copy ready for site.yml to turn archiving on.
All but the first skip the provisioning of the host the first built (--skip-tags
dr_drill_provision), as an operator drilling again does, and the cold month's fetch. These run last, in this order, once
per converge (a second `molecule verify` finds drill_probe and the drill host's PostgreSQL
already there): the backup tests before them leave repo2 with a full backup taken after their
outages, and test_6_offsite_history.py leaves it as the off-site snapshot it restored after the
hub deleted it: the first drill restores that."""

import json
import os
import time
from pathlib import Path

from conftest import PROJECT, ansible_playbook, flat, host_of, psql
from pgbackrest_info import switch_wal_and_wait, wal_max

# Outside Molecule's working directory, which its destroy removes: the reports stay to be read.
REPORTS = PROJECT / ".cache" / "dr-reports" / Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]).name
REPO2 = "/var/lib/pgbackrest-offsite"
WAL_END = "WAL replayed to the end of repo2's archive"
# Every check of files/drill_verify.py; the WAL end is checked for a restore to the newest point.
CHECKS = {"archive_mode is off", "writable", "pg_amcheck", "archive ledger",
          "partitions vs backup manifest", "partitions ahead", "archive queryable", "markers",
          "roles log in", "cold month from the off-site copy"}
PHASES = ("provision", "restore", "wal_replay_and_promotion", "verification")


def hub_today() -> str:
    """The day the hub's maintenance last ran for. The lifecycle test (test_5) walked the hub
    fifteen months past the calendar with hubctl --today, archiving the months near the real
    date: the partitions ahead are counted from the hub's day, not the calendar's."""
    return psql(host_of("hub_db"), "SELECT max(detail->>'today') FROM hub_job_runs WHERE job IN ('daily', 'partitions')")


# A drill again over the same host: no provisioning, and no second fetch of a cold month from the
# off-site store (the first drill checked one; the re-drills test other things).
AGAIN = ("--skip-tags", "dr_drill_provision", "-e", "dr_drill_cold_month=false")
COLD_CHECK = "cold month from the off-site copy"


def drill(*extra: str) -> tuple[int, str, dict]:
    """Run the drill; return its exit code, its output and the JSON report it wrote."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    before = set(REPORTS.glob("*.json"))
    rc, output = ansible_playbook("playbooks/dr-drill.yml", "-e", f"dr_drill_report_dir={REPORTS}",
                                  "-e", f"dr_drill_today={hub_today()}", *extra)
    written = sorted(set(REPORTS.glob("*.json")) - before)
    assert len(written) == 1, f"the drill wrote {len(written)} reports: {output[-4000:]}"
    assert written[0].with_suffix(".md").is_file()
    return rc, output, json.loads(written[0].read_text())


def assert_listens_on_localhost_only(target):
    assert psql(target, "SHOW listen_addresses", db="postgres") == "localhost"
    listeners = target.run("ss -Hltn 'sport = :5432'").stdout.split("\n")
    local = [line.split()[3] for line in listeners if line.strip()]
    assert local and all(a.startswith(("127.0.0.1:", "[::1]:")) for a in local), local


def probe(host) -> list[str]:
    return psql(host, "SELECT note FROM drill_probe ORDER BY note", db="postgres").split()


def write_and_ship(hub, *notes: str) -> str:
    """Write rows on the hub, close their WAL segment and wait until repo2 holds it."""
    psql(hub, [f"INSERT INTO drill_probe VALUES ('{note}')" for note in notes], db="postgres")
    segment = switch_wal_and_wait(hub)
    for _ in range(120):
        if (wal_max(hub, 2) or "")[-24:] >= segment:
            return segment
        time.sleep(1)
    raise AssertionError(f"repo2 did not receive {segment} within 120 s")


def report_markdown() -> str:
    return max(REPORTS.glob("*.md"), key=lambda p: p.stat().st_mtime).read_text()


def test_the_drill_restores_repo2_onto_a_fresh_host_and_its_report_passes(hub, offsite, target):
    assert not target.exists("psql"), "the drill host must start without PostgreSQL"
    psql(hub, "CREATE TABLE drill_probe (note text PRIMARY KEY)", db="postgres")
    write_and_ship(hub, "before-the-drill")

    rc, output, report = drill()
    assert rc == 0, output[-4000:]
    assert report["ok"] is True and report["failures"] == [], report["failures"]
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) == CHECKS | {WAL_END}
    assert all(c["ok"] for c in checks.values()), [c for c in checks.values() if not c["ok"]]
    assert "0 finding(s)" in checks["pg_amcheck"]["detail"]
    # The lifecycle test archived months: the copy holds each exactly as the ledger says.
    assert checks["archive ledger"]["months"] > 0, checks["archive ledger"]
    # It also made months cold: the report lists them with their off-site copies, and the
    # newest cold month of the allocations, fetched from the off-site store alone (the hub's
    # files are not used), holds the copy's ledger count and checksum.
    cold = report["cold_months"]
    assert cold and all(m["offsite_verified_at"] for m in cold), cold
    cold_check = checks["cold month from the off-site copy"]
    newest = max(m["month"] for m in cold if m["table"] == "v1_hub_work_allocations")
    assert (cold_check["table"], cold_check["month"]) == ("v1_hub_work_allocations", newest), cold_check
    assert cold_check["rows"] > 0 and cold_check["files"] >= 1, cold_check
    assert "| v1_hub_work_allocations | " + newest in report_markdown(), "cold months missing from the report"
    assert not offsite.run("ls -d /tmp/hub-drill-cold.*").stdout.strip(), "the drill left files on the off-site host"
    assert checks["partitions vs backup manifest"]["partitions"] > 0, checks["partitions vs backup manifest"]
    assert report["drill"]["target"] == "latest" and "--archive-mode=off" in report["drill"]["restore_options"]
    assert report["drill"]["provisioned"] is True
    assert report["archive_mode"] == "off" and report["archiving_into_hub_repositories"] is False

    # RTO: on the clock, from the drill's start to the verified copy, phase by phase.
    phases = report["rto"]["phases_s"]
    assert all(isinstance(phases[p], (int, float)) and phases[p] >= 0 for p in PHASES), phases
    assert phases["provision"] > 0 and phases["restore"] > 0
    assert abs(report["rto"]["seconds"] - sum(phases[p] for p in PHASES)) < 1, report["rto"]
    assert report["rto"]["ok"] and report["rto"]["budget_s"] == 14400

    # RPO: the hub's newest marker as the restore began against the newest the copy holds, a
    # marker the hub really wrote.
    rpo = report["rpo"]
    assert report["drill"]["hub_marked"] is True
    assert rpo["reference"]["kind"].startswith("hub's newest marker"), rpo
    assert isinstance(rpo["seconds"], (int, float)) and 0 <= rpo["seconds"] <= rpo["budget_s"] == 86400
    restored = rpo["restored_markers"]
    assert psql(hub, f"SELECT written_at::text FROM hub_markers WHERE id = {int(restored['last_id'])}") \
        == restored["last_written_at"]

    # The copy is the hub's: the row written before the drill is there, and it is writable.
    assert probe(target) == ["before-the-drill"]
    assert psql(target, "SELECT pg_is_in_recovery()", db="postgres") == "f"
    # A writable copy of the hub is reachable from this host only, though the postgresql role
    # (and pg_hba) would admit the client networks.
    assert_listens_on_localhost_only(target)



def test_the_copy_never_archives_into_the_hubs_repositories(hub, offsite, target):
    assert psql(target, "SHOW archive_mode", db="postgres") == "off"
    psql(target, "INSERT INTO drill_probe VALUES ('written-on-the-copy')", db="postgres")
    segment = psql(target, "SELECT pg_walfile_name(pg_switch_wal())", db="postgres")
    timeline = segment[:8]
    assert timeline != "00000001", "the copy was not promoted onto a timeline of its own"
    assert psql(target, "SELECT archived_count + failed_count FROM pg_stat_archiver", db="postgres") == "0"
    ready = target.run("find /var/lib/postgresql -path '*/pg_wal/archive_status/*.ready'").stdout.split()
    assert ready == [], ready
    # Neither repository holds anything of the copy's timeline: no history file, no segment.
    for host, path in ((offsite, REPO2), (hub, "/var/lib/pgbackrest")):
        found = host.run(f"find {path}/archive -name '{timeline}*'").stdout.split()
        assert found == [], found
    # Nor a copy of its pgBackRest configuration that could: repo2 only, never repo1.
    conf = target.file("/etc/pgbackrest/pgbackrest.conf")
    assert conf.user == "postgres" and conf.mode == 0o640
    assert "repo1-" not in conf.content_string and "repo2-host=" in conf.content_string


def test_a_drill_to_a_restore_point_has_the_rows_before_it_and_none_after(hub, target):
    psql(hub, ["INSERT INTO drill_probe VALUES ('before-the-point')",
               "SELECT pg_create_restore_point('drill-test-point')",
               "INSERT INTO drill_probe VALUES ('after-the-point')"], db="postgres")
    write_and_ship(hub, "after-the-point-too")

    rc, output, report = drill("-e", "dr_drill_target_name=drill-test-point", *AGAIN)
    assert rc == 0, output[-4000:]
    assert report["ok"] is True, report["failures"]
    # Over the host the first drill built: no provisioning, and the report says so.
    assert report["drill"]["provisioned"] is False
    assert "TASK [postgresql : " not in flat(output) and "TASK [dr_drill : Restore the hub from repo2" in flat(output)
    assert report["drill"]["target"] == "name" and report["drill"]["target_value"] == "drill-test-point"
    assert {c["name"] for c in report["checks"]} == CHECKS - {COLD_CHECK}
    assert "--type=name" in report["drill"]["restore_options"]
    assert probe(target) == ["before-the-drill", "before-the-point"]
    assert_listens_on_localhost_only(target)


def test_a_wal_segment_missing_from_repo2_fails_the_drill_and_the_report_names_the_check(hub, offsite, target):
    first = write_and_ship(hub, "gap-1")
    lost = write_and_ship(hub, "gap-2")
    last = write_and_ship(hub, "gap-3")
    files = offsite.run(f"find {REPO2}/archive/hub -name '{lost}-*'").stdout.split()
    assert len(files) == 1, files
    aside = "/var/tmp/" + os.path.basename(files[0])
    assert offsite.run(f"mv {files[0]} {aside}").rc == 0
    try:
        rc, output, report = drill(*AGAIN)
    finally:
        assert offsite.run(f"mv {aside} {files[0]}").rc == 0, "repo2's segment could not be put back"
    assert rc != 0
    assert f"check failed: {WAL_END}" in report["failures"], report["failures"]
    out = flat(output)
    assert f"The DR drill on {target.backend.get_hostname()} FAILED" in out, output[-4000:]
    assert "check failed: WAL replayed to the end of repo2" in out, output[-4000:]
    check = next(c for c in report["checks"] if c["name"] == WAL_END)
    assert not check["ok"] and "ENDED EARLY" in check["detail"], check
    # Replay read through the segment before the missing one: the copy has the row written
    # before it and lost the rest.
    assert report["recovery_end"]["segment"] == first, report["recovery_end"]
    assert report["recovery_end"]["archive_end"][-24:] >= last
    assert probe(target) == ["after-the-point", "after-the-point-too", "before-the-drill", "before-the-point", "gap-1"]
    # Every other check passed: only the missing WAL is reported.
    assert [c["name"] for c in report["checks"] if not c["ok"]] == [WAL_END]


def test_promotion_is_refused_until_the_old_primary_is_fenced_and_changes_nothing(target):
    started = psql(target, "SELECT pg_postmaster_start_time()", db="postgres")
    reports = set(REPORTS.glob("*"))
    rc, output = ansible_playbook("playbooks/dr-drill.yml", "-e", f"dr_drill_report_dir={REPORTS}",
                                  "-e", "dr_drill_promote=true", *AGAIN)
    assert rc != 0
    assert "first fence the old primary" in flat(output), output[-4000:]
    assert "dr_drill_old_primary_fenced=true" in flat(output)
    # Refused before the restore: the copy still runs as it was, and no report was written.
    assert psql(target, "SELECT pg_postmaster_start_time()", db="postgres") == started
    assert set(REPORTS.glob("*")) == reports


def test_promotion_restores_and_clears_the_restores_archive_mode_for_site_yml(target):
    rc, output, report = drill("-e", "dr_drill_promote=true", "-e", "dr_drill_old_primary_fenced=true", *AGAIN)
    assert rc == 0, output[-4000:]
    assert report["ok"] is True, report["failures"]
    assert report["drill"]["mode"].startswith("promotion") and "site.yml" in report["drill"]["next_steps"]
    # The old hub is not asked (it is fenced): the RPO counts from the drill's start.
    assert report["drill"]["hub_marked"] is False
    assert report["rpo"]["reference"]["kind"].startswith("drill start (promotion"), report["rpo"]
    # Still not archiving, but the restore's archive_mode = off is gone from postgresql.auto.conf:
    # the pgbackrest role's archive_mode = on takes effect at the restart site.yml makes.
    assert psql(target, "SHOW archive_mode", db="postgres") == "off"
    auto = psql(target, "SELECT current_setting('data_directory') || '/postgresql.auto.conf'", db="postgres")
    assert "archive_mode" not in target.file(auto).content_string
    assert probe(target)[-1] == "gap-3", "the promoted copy lacks the hub's newest rows"
    # Promoted for real: it listens where the postgresql role says, the drill's limit is gone.
    assert psql(target, "SHOW listen_addresses", db="postgres").startswith("localhost,")
    major = psql(target, "SHOW server_version_num", db="postgres")[:2]
    assert not target.file(f"/etc/postgresql/{major}/main/conf.d/90-dr-drill-local-only.conf").exists
