"""Backups as the operator checks them: files and schedules, then the jobs run for real, their
backups in both repositories, WAL in both, a restore from repo1 with a row only WAL carries,
the busy refusal, and bad inputs stopped by the preflight."""

import json
import re
import shlex
import subprocess
import time

import pytest
from conftest import HUBCTL, SECRETS, alert_mark, alerts, ansible_playbook, assert_nothing_changed, flat, psql, run_cron_now
from pgbackrest_info import archive_failures, info, switch_wal_and_wait, wait_for_archive_failure, wal_max



def passphrase() -> str:
    return (SECRETS / "backup_repo_cipher_pass").read_text().split()[0]


def backups(host, repo: int, kind: str | None = None) -> list[dict]:
    return [b for b in info(host).get("backup", [])
            if b["database"]["repo-key"] == repo and (kind is None or b["type"] == kind)]


def job(host, args: str):
    return host.run(f"{HUBCTL} {args}")


def last_run(hub, name: str) -> list[str]:
    return psql(hub, f"SELECT outcome, detail->>'host' FROM hub_job_runs WHERE job = '{name}' "
                     "ORDER BY id DESC LIMIT 1").split("|")


# --------------------------------------------------------------------------- files and schedules

def test_configuration_is_readable_by_postgres_only(hub, offsite):
    for host in (hub, offsite):
        conf = host.file("/etc/pgbackrest/pgbackrest.conf")
        assert (conf.user, conf.group, conf.mode) == ("postgres", "postgres", 0o640)
        key = host.file("/etc/pgbackrest/tls/host.key")
        assert (key.user, key.mode) == ("postgres", 0o600)
    for host, path in ((hub, "/var/lib/pgbackrest"), (offsite, "/var/lib/pgbackrest-offsite")):
        repo = host.file(path)
        assert repo.user == "postgres" and repo.mode & 0o007 == 0, oct(repo.mode)
        assert host.run(f"find {path} ! -type l -perm /o=rwx | head -n 1").stdout == ""
        assert not host.file("/etc/pgbackrest.conf").exists


def test_the_passphrase_is_only_in_the_two_configuration_files(hub, offsite):
    secret = passphrase()
    for host in (hub, offsite):
        conf = host.run("sudo cat /etc/pgbackrest/pgbackrest.conf").stdout
        assert secret in conf and "repo2-cipher-type=aes-256-cbc" in conf
        found = host.run(f"grep -rlF -- {shlex.quote(secret)} /etc/cron.d /etc/hub /var/log /etc/sudoers.d /etc/postgresql")
        assert found.stdout.strip() == "", found.stdout


def test_both_tls_servers_run(hub, offsite):
    for host in (hub, offsite):
        service = host.service("pgbackrest")
        assert service.is_running and service.is_enabled
        assert host.socket("tcp://0.0.0.0:8432").is_listening


def test_postgresql_archives_through_pgbackrest(hub):
    assert psql(hub, "SHOW archive_mode") == "on"
    assert psql(hub, "SHOW archive_command") == "pgbackrest --stanza=hub archive-push %p"
    conf = hub.file("/etc/pgbackrest/pgbackrest.conf").content_string
    assert "archive-async=y" in conf and "archive-push-queue-max=80MiB" in conf


def test_cron_runs_the_backup_schedule(hub, offsite):
    def entries(host):
        cron = host.file("/etc/cron.d/hub-backup")
        assert cron.user == "root" and cron.mode == 0o644
        lines = [l.split(None, 6) for l in cron.content_string.splitlines() if l and not l.startswith("#")]
        return {f[6].split()[2]: f for f in lines}
    on_hub = entries(hub)
    assert on_hub["incr"][:6] == ["0", "1", "*", "*", "1-6", "hubmaint"]
    assert on_hub["full"][:6] == ["0", "4", "*", "*", "0", "hubmaint"]
    assert on_hub["verify"][:6] == ["0", "5", "*", "*", "3", "hubmaint"]
    # A scheduled backup waits up to 2 hours for a job holding the lock (pgbackrest_lock_wait_seconds).
    assert on_hub["full"][6] == ("/usr/local/bin/hubctl backup full --stanza hub --wait 7200 "
                                 ">> /var/log/hub/backup-full.log 2>&1")
    on_offsite = entries(offsite)
    assert on_offsite["offsite"][:6] == ["0", "6", "1", "*", "*", "hubmaint"]
    assert on_offsite["verify"][:6] == ["0", "6", "*", "*", "4", "hubmaint"]
    assert on_offsite["offsite"][6] == ("/usr/local/bin/hubctl backup offsite --wait 14400 --stanza hub "
                                        ">> /var/log/hub/backup-offsite.log 2>&1")
    # The weekly incremental to repo2 (Sunday 06:00); on a Sunday the 1st, the two wait for each other.
    assert on_offsite["offsite-incr"][:6] == ["0", "6", "*", "*", "0", "hubmaint"]
    assert on_offsite["offsite-incr"][6] == ("/usr/local/bin/hubctl backup offsite-incr --wait 14400 "
                                             "--stanza hub >> /var/log/hub/backup-offsite.log 2>&1")
    # A dated copy of repo2 the hub cannot reach, daily after the 06:00 jobs (test_6_offsite_history.py).
    assert on_offsite["snapshot"][:6] == ["30", "7", "*", "*", "*", "hubmaint"]
    assert on_offsite["snapshot"][6] == ("/usr/local/bin/hubctl backup snapshot --wait 14400 --stanza hub "
                                         ">> /var/log/hub/repo-snapshot.log 2>&1")
    # The off-site host checks repo2's archive itself and repairs a hole with a new off-site full.
    walcheck = [f for f in on_offsite.values() if f[6].startswith("/usr/local/bin/hubctl wal-check ")]
    assert len(walcheck) == 1 and walcheck[0][:6] == ["*/30", "*", "*", "*", "*", "hubmaint"], walcheck
    assert walcheck[0][6] == ("/usr/local/bin/hubctl wal-check --repo 2 --repair-repo 2 --textfile "
                              "/var/lib/hub/wal-check/hub_wal.prom --stanza hub >> /var/log/hub/wal-check.log 2>&1")


def test_stanza_exists_in_both_repositories(hub):
    status = info(hub)["repo"]
    assert sorted(r["key"] for r in status) == [1, 2]
    for repo in status:
        assert repo["status"]["code"] in (0, 2), repo  # ok, or no backup yet
    assert {r["key"]: r["cipher"] for r in status}[2] == "aes-256-cbc"


def test_site_yml_took_the_first_full_backup_in_each_repository(hub):
    # A new server is not left unprotected until the first scheduled backup.
    assert backups(hub, 1, "full") and backups(hub, 2, "full")
    runs = psql(hub, "SELECT string_agg(DISTINCT job || ':' || outcome, ',' ORDER BY job || ':' || outcome) "
                     "FROM hub_job_runs WHERE job IN ('backup-full', 'backup-offsite')")
    assert runs == "backup-full:ok,backup-offsite:ok"


# --------------------------------------------------------------------------- the jobs, for real

def test_full_then_incremental_backup_to_repo1_with_run_records(hub):
    psql(hub, "CREATE TABLE IF NOT EXISTS backup_marker (note text PRIMARY KEY)", db="postgres")
    psql(hub, "INSERT INTO backup_marker VALUES ('before-full') ON CONFLICT DO NOTHING", db="postgres")
    result = job(hub, "backup full")
    assert result.rc == 0, result.stdout + result.stderr
    assert "step=backup repo=1 type=full" in result.stdout and "step=expire" in result.stdout
    assert last_run(hub, "backup-full") == ["ok", hub.check_output("hostname")]
    fulls = backups(hub, 1, "full")
    assert fulls

    psql(hub, "INSERT INTO backup_marker VALUES ('after-full') ON CONFLICT DO NOTHING", db="postgres")
    result = job(hub, "backup incr")
    assert result.rc == 0, result.stdout + result.stderr
    assert last_run(hub, "backup-incr")[0] == "ok"
    incr = backups(hub, 1, "incr")
    assert incr and incr[-1]["reference"] and fulls[-1]["label"] in incr[-1]["reference"]


SAMPLER = ("nohup sh -c 'for i in $(seq 1 3000); do cat /proc/[0-9]*/cmdline 2>/dev/null "
           "| tr \"\\0\" \" \"; echo; sleep 0.05; done' > /root/cmdlines.txt 2>/dev/null & echo $!")


def test_offsite_full_to_repo2_is_recorded_in_the_hubs_database(hub, offsite):
    # Every process's arguments on both hosts are sampled while the backup runs; the
    # passphrase must be in none of them.
    samplers = {h: h.check_output(SAMPLER) for h in (hub, offsite)}
    try:
        result = job(offsite, "backup offsite")
    finally:
        for h, pid in samplers.items():
            h.run(f"kill {pid}")
    assert result.rc == 0, result.stdout + result.stderr
    assert "step=backup repo=2 type=full" in result.stdout
    secret = passphrase()
    for h in (hub, offsite):
        seen = h.file("/root/cmdlines.txt").content_string
        h.run("rm -f /root/cmdlines.txt")
        assert secret not in seen
        if h is offsite:
            assert "--type=full backup" in seen  # the sampler did see the backup run
    assert last_run(hub, "backup-offsite") == ["ok", offsite.check_output("hostname")]
    assert backups(offsite, 2, "full")
    assert backups(hub, 2, "full")  # the hub reads repo2's backups through the TLS server


def test_the_weekly_offsite_incremental_chains_on_repo2s_full(hub, offsite):
    """A restore from repo2 then replays WAL from the newest incremental (a week at most), not
    from the monthly full; test_restore_from_each_repository restores this chain."""
    result = job(offsite, "backup offsite-incr")
    assert result.rc == 0, result.stdout + result.stderr
    assert "step=backup repo=2 type=incr" in result.stdout
    newest_full = backups(offsite, 2, "full")[-1]["label"]
    incr = backups(offsite, 2, "incr")
    assert incr and incr[-1]["prior"] == newest_full, incr
    assert last_run(hub, "backup-offsite-incr") == ["ok", offsite.check_output("hostname")]


def test_wal_reaches_both_repositories(hub):
    before = (wal_max(hub, 1), wal_max(hub, 2))
    segment = switch_wal_and_wait(hub)
    for _ in range(60):
        now = (wal_max(hub, 1), wal_max(hub, 2))
        if all(w and w[-24:] >= segment for w in now):
            break
        time.sleep(1)
    assert all(w and w[-24:] >= segment for w in now), (before, now, segment)


def test_backup_status_reports_both_repositories_healthy(hub):
    result = job(hub, "backup-status --json")
    assert result.rc == 0, result.stdout + result.stderr
    repos = {r["repo"]: r for r in json.loads(result.stdout)["repos"]}
    assert sorted(repos) == [1, 2]
    assert all(r["healthy"] for r in repos.values()), repos
    assert repos[1]["newest"]["type"] == "incr" and repos[2]["newest_full"]["age_hours"] < 1
    text = job(hub, "backup-status")
    assert "repo1: ok" in text.stdout and "repo2: ok" in text.stdout


def test_verify_reads_the_report_and_records_the_run(hub, offsite):
    result = job(hub, "backup verify")
    assert result.rc == 0, result.stdout + result.stderr
    assert last_run(hub, "backup-verify")[0] == "ok"
    result = job(offsite, "backup verify --repo 2")
    assert result.rc == 0, result.stdout + result.stderr


@pytest.mark.parametrize("repo", [1, 2])
def test_restore_from_each_repository_has_the_rows_from_before_and_after_the_backup(hub, repo):
    # A row after the last backup reaches the restore only through archived WAL. From repo2,
    # backup and WAL both come from the off-site host alone (decrypted on the hub).
    psql(hub, "INSERT INTO backup_marker VALUES ('after-incr') ON CONFLICT DO NOTHING", db="postgres")
    switch_wal_and_wait(hub)
    for _ in range(60):
        if (wal_max(hub, repo) or "")[-24:] >= psql(hub, "SELECT last_archived_wal FROM pg_stat_archiver", db="postgres"):
            break
        time.sleep(1)
    version = hub.check_output("ls /usr/lib/postgresql | sort -n | tail -n 1")
    target = "/var/tmp/hub-restore-test"
    hub.run(f"rm -rf {target}")
    hub.run(f"install -d -o postgres -g postgres -m 0700 {target}")
    restore = hub.run(f"sudo -u postgres pgbackrest --stanza=hub --repo={repo} --pg1-path={target} "
                      "--archive-mode=off restore")
    assert restore.rc == 0, restore.stdout + restore.stderr
    # Debian keeps postgresql.conf and pg_hba.conf in /etc: the scratch copy gets its own.
    hub.run(f"sudo -u postgres sh -c \"printf '%s\\n' \\\"port = 5499\\\" \\\"listen_addresses = ''\\\" "
            f"\\\"unix_socket_directories = '{target}'\\\" > {target}/postgresql.conf\"")
    hub.run(f"sudo -u postgres sh -c \"echo 'local all postgres peer' > {target}/pg_hba.conf\"")
    pg_ctl = f"/usr/lib/postgresql/{version}/bin/pg_ctl"
    start = hub.run(f"sudo -u postgres {pg_ctl} -D {target} -l {target}/restore.log -w -t 120 start")
    try:
        assert start.rc == 0, start.stdout + start.stderr + hub.run(f"tail -30 {target}/restore.log").stdout
        query = f"sudo -u postgres psql -XAtq -h {target} -p 5499 -d postgres -c "
        for _ in range(120):
            if hub.run(query + shlex.quote("SELECT pg_is_in_recovery()")).stdout.strip() == "f":
                break
            time.sleep(1)
        notes = hub.check_output(query + shlex.quote("SELECT string_agg(note, ',' ORDER BY note) FROM backup_marker"))
        assert notes == "after-full,after-incr,before-full"
        assert hub.run(query + shlex.quote("SHOW archive_mode")).stdout.strip() == "off"
    finally:
        hub.run(f"sudo -u postgres {pg_ctl} -D {target} -m fast -w stop")
        hub.run(f"rm -rf {target}")


def test_a_second_backup_at_the_same_time_is_refused_as_busy_and_alerted(hub):
    mark = alert_mark(hub)
    hub.run(f"rm -f /tmp/full.out; nohup {HUBCTL} backup full > /tmp/full.out 2>&1 &")
    for _ in range(60):
        if "job=backup-full" in hub.run("cat /run/lock/hub/hubctl.lock 2>/dev/null || true").stdout:
            break
        time.sleep(0.5)
    result = job(hub, "backup incr")
    assert result.rc == 75, result.stdout + result.stderr
    assert "outcome=busy" in result.stdout
    assert last_run(hub, "backup-incr")[0] == "busy"
    assert "hubctl backup-incr: busy" in alerts(hub, since=mark)
    # The background full ends, and ends ok: one end line, with its outcome (a hung backup
    # has no end line and fails here).
    for _ in range(300):
        if " step=end " in hub.file("/tmp/full.out").content_string:
            break
        time.sleep(1)
    ends = [line for line in hub.file("/tmp/full.out").content_string.splitlines() if " step=end " in line]
    assert len(ends) == 1 and "outcome=ok" in ends[0], hub.file("/tmp/full.out").content_string[-2000:]


def test_a_failed_backup_job_alerts_at_once(hub):
    # repo2 can only be backed up from the off-site host: pgBackRest refuses on the hub, and
    # sudo refuses a command line its rule does not list. Either way the run fails and alerts.
    mark = alert_mark(hub)
    result = job(hub, "backup offsite")
    assert result.rc == 1, result.stdout + result.stderr
    assert last_run(hub, "backup-offsite")[0] == "failed"
    assert "hubctl backup-offsite: failed" in alerts(hub, since=mark)


# --------------------------------------------------------------------------- bad inputs

def _site_with(extra: str) -> tuple[int, str]:
    return ansible_playbook("site.yml", "-e", extra, timeout=600)


@pytest.mark.parametrize("extra, message", [
    # The hub's preflight play runs first: it names its own input, mapped from the same vault value.
    ('{"backup_repo_cipher_pass": ""}', "pgbackrest_repo2_cipher_pass is missing"),
    ('{"backup_repo_retention_full": 0}', "backup_repo_retention_full is 0; it must be at least 1"),
    ('{"pgbackrest_repo1_retention_full": 0}', "pgbackrest_repo1_retention_full is 0; it must be at least 1"),
])
def test_bad_input_stops_in_the_preflight_before_anything_changes(extra, message):
    rc, output = _site_with(extra)
    assert rc != 0
    out = flat(output)
    assert message in out, output[-3000:]
    assert_nothing_changed(output)
    assert "PLAY [Build the hub's PostgreSQL server]" not in output


def test_an_unreachable_offsite_host_stops_site_yml_before_anything_changes(offsite):
    name = offsite.backend.get_hostname()  # the container's name, as the inventory has it
    subprocess.run(["docker", "stop", "-t", "5", name], check=True, capture_output=True)
    try:
        rc, output = _site_with("{}")
    finally:
        subprocess.run(["docker", "start", name], check=True, capture_output=True)
    out = flat(output)
    assert rc != 0
    assert f"The off-site backup host {name} did not answer" in out, output[-3000:]
    assert_nothing_changed(output)
    assert "PLAY [Build the hub's PostgreSQL server]" not in output
    for _ in range(60):
        if offsite.run("systemctl is-active pgbackrest.service").stdout.strip() == "active":
            break
        time.sleep(1)
    assert offsite.service("pgbackrest").is_running


def repo1_segments(hub) -> set[int]:
    """Every WAL segment repo1's archive holds, as a position (log * 256 + segment)."""
    names = hub.check_output("find /var/lib/pgbackrest/archive/hub -name '00000001*' -printf '%f\\n'")
    return {int(n[8:16], 16) * 256 + int(n[16:24], 16) for n in names.split() if len(n) >= 24}


def position(segment: str) -> int:
    return int(segment[8:16], 16) * 256 + int(segment[16:24], 16)


def missing_in_repo1(hub, first: str, last: str) -> list[int]:
    held = repo1_segments(hub)
    return [p for p in range(position(first), position(last) + 1) if p not in held]


def test_offsite_host_down_hub_keeps_writing_alerts_and_catches_up(hub, offsite):
    first = psql(hub, "SELECT pg_walfile_name(pg_current_wal_lsn())", db="postgres")
    offsite.run("systemctl stop pgbackrest.service")
    try:
        failed_before = archive_failures(hub)
        psql(hub, "INSERT INTO backup_marker VALUES ('offsite-down') ON CONFLICT DO NOTHING", db="postgres")
        segment = psql(hub, "SELECT pg_walfile_name(pg_switch_wal())", db="postgres")
        wait_for_archive_failure(hub, failed_before, "archiving did not report the unreachable off-site host")
        # The hub keeps taking writes. A backup to repo1 cannot complete while its last WAL
        # segment waits for repo2 (pgBackRest's archive check): the job fails and alerts at once.
        psql(hub, "INSERT INTO backup_marker VALUES ('still-writing') ON CONFLICT DO NOTHING", db="postgres")
        mark = alert_mark(hub)
        result = job(hub, "backup incr")
        assert result.rc == 1, result.stdout + result.stderr
        assert "was not archived" in result.stdout and "was not archived" in alerts(hub, since=mark)
    finally:
        offsite.run("systemctl start pgbackrest.service")
    for _ in range(180):
        if (wal_max(hub, 2) or "")[-24:] >= segment:
            break
        time.sleep(1)
    assert (wal_max(hub, 2) or "")[-24:] >= segment, "repo2 did not catch up after the host came back"
    last = switch_wal_and_wait(hub)
    result = job(hub, "backup incr")
    assert result.rc == 0, result.stdout + result.stderr
    # Nothing was lost on the way: repo1 holds every segment from before the outage to now.
    missing = missing_in_repo1(hub, first, last)
    assert not missing, f"repo1 lacks {len(missing)} segments between {first} and {last}"


def wal_gaps(host, expect_rc: int, cron_file: str = "/etc/cron.d/hub-maintenance",
             textfile: str = "/var/lib/hub/metrics/hub_wal.prom"):
    """hubctl wal-check's cron line now: ({(repo, since): missing segments} from its textfile,
    its output)."""
    result = run_cron_now(host, "wal-check", cron_file)
    assert result.rc == expect_rc, result.stdout + result.stderr
    prom = host.file(textfile).content_string
    found = re.findall(r'^hub_wal_archive_missing_segments\{repo="(\d+)",since="(\w+)"\} (\d+)$', prom, re.M)
    return {(repo, since): int(n) for repo, since, n in found}, result.stdout


def backup_runs(hub, job_name: str) -> list[str]:
    return psql(hub, f"SELECT id || ' ' || outcome || ' ' || coalesce(detail->>'argv', '') FROM hub_job_runs "
                     f"WHERE job = '{job_name}' ORDER BY id").splitlines()


def test_past_the_queue_limit_wal_is_dropped_so_pg_wal_stays_bounded(hub, offsite):
    # The scenario's queue limit is 80 MiB: about 120 MB of WAL written while the off-site host
    # is down passes it. pgBackRest then reports the waiting segments archived, dropping them
    # (for every repository: repo1's archive has the gap too, docs/decisions.md), so that
    # PostgreSQL can recycle them and pg_wal cannot fill the disk.
    queue_segments = 80 // 16
    archived = "SELECT left(coalesce(last_archived_wal, ''), 24) FROM pg_stat_archiver"
    offsite.run("systemctl stop pgbackrest.service")
    try:
        psql(hub, "CREATE TABLE wal_filler (pad text)", db="postgres")
        start = psql(hub, "SELECT pg_current_wal_lsn()", db="postgres")
        written = 0
        while written < 120 * 1024 * 1024:
            psql(hub, "INSERT INTO wal_filler SELECT repeat(md5(random()::text), 32) FROM generate_series(1, 20000)",
                 db="postgres")
            written = int(psql(hub, f"SELECT pg_current_wal_lsn() - '{start}'::pg_lsn", db="postgres"))
        last = psql(hub, "SELECT pg_walfile_name(pg_switch_wal())", db="postgres")
        # The hub took every write. PostgreSQL retries a failing segment after a minute's
        # pause; past the limit pgBackRest reports the segments archived.
        for _ in range(300):
            if psql(hub, archived, db="postgres") >= last:
                break
            time.sleep(1)
        assert psql(hub, archived, db="postgres") >= last, "pg_wal kept the segments past the queue limit"
        # What pg_wal still holds for the archive once the drop is through. (A count taken while
        # waiting can be higher: during PostgreSQL's minute of pause after a failed attempt the
        # segments written meanwhile wait too, and the next attempt drops them all.)
        waiting = int(hub.check_output("ls /var/lib/postgresql/*/main/pg_wal/archive_status | grep -c ready || true"))
        assert waiting <= queue_segments + 2, waiting
        dropped = hub.run("grep -rh 'dropped WAL file' /var/log/pgbackrest /var/log/postgresql")
        assert dropped.rc == 0, "pgBackRest did not report the segments it dropped"
    finally:
        offsite.run("systemctl start pgbackrest.service")
        psql(hub, "DROP TABLE IF EXISTS wal_filler", db="postgres")
    # Once the host is back, archiving resumes in both repositories, and a full backup in each
    # starts a chain a restore can replay again.
    segment = switch_wal_and_wait(hub)
    for _ in range(120):
        if (wal_max(hub, 2) or "")[-24:] >= segment:
            break
        time.sleep(1)
    assert (wal_max(hub, 2) or "")[-24:] >= segment, "repo2 did not receive WAL after the host came back"
    # pgBackRest reports both archives healthy, but each has the hole: the hub's hubctl wal-check
    # finds it (HubWalArchiveGap; test_2_monitoring.py follows that alert to the receiver), and,
    # archiving having resumed, repairs repo1 itself with a new full backup, recorded as a run.
    fulls = backup_runs(hub, "backup-full")
    before, out = wal_gaps(hub, expect_rc=3)
    assert before[("1", "newest_backup")] > 0 and before[("2", "newest_backup")] > 0, before
    assert "step=repair repo=1 backup_job=backup-full outcome=started" in out, out
    repaired = backup_runs(hub, "backup-full")[len(fulls):]
    assert len(repaired) == 1 and " ok " in repaired[0] and "--repair-repo" in repaired[0], repaired
    # repo2 is the off-site host's to back up: its own wal-check finds the hole and takes the
    # off-site full.
    offsites = backup_runs(hub, "backup-offsite")
    seen, out = wal_gaps(offsite, 3, "/etc/cron.d/hub-backup", "/var/lib/hub/wal-check/hub_wal.prom")
    assert seen[("2", "newest_backup")] == before[("2", "newest_backup")], (seen, before)
    assert "step=repair repo=2 backup_job=backup-offsite outcome=started" in out, out
    repaired = backup_runs(hub, "backup-offsite")[len(offsites):]
    assert len(repaired) == 1 and " ok " in repaired[0], repaired
    # The new fulls start after the hole: a restore from either replays again. The hole stays in
    # the older history, which the oldest backups' restores still meet, until retention; a
    # check now repairs nothing more.
    after, out = wal_gaps(hub, expect_rc=3)
    assert "step=repair" not in out, out
    assert after[("1", "newest_backup")] == 0 and after[("2", "newest_backup")] == 0, after
    assert after[("1", "oldest_backup")] >= before[("1", "newest_backup")], after


def test_a_corrupted_data_page_fails_the_backup_and_alerts(hub):
    # Nothing may rewrite the page after the garbage goes in: autovacuum would set hint bits and
    # the visibility map, dirtying it, and the backup's own checkpoint would then write the good
    # page back over the garbage (this test passed a corrupt-free backup once, on Debian 12). So
    # no autovacuum, and the hint bits are set and flushed before the page is damaged.
    psql(hub, ["CREATE TABLE corrupt_me (id int, pad text) WITH (autovacuum_enabled = off)",
               "INSERT INTO corrupt_me SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g",
               "SELECT count(*) FROM corrupt_me",
               "CHECKPOINT"], db="postgres")
    path = psql(hub, "SELECT current_setting('data_directory') || '/' || pg_relation_filepath('corrupt_me')",
                db="postgres")
    try:
        # Garbage in the middle of the first page, behind PostgreSQL's back: its checksum no
        # longer matches, which pgBackRest finds while copying the file.
        hub.run(f"printf 'garbage-garbage-garbage' | dd of={path} bs=1 seek=4000 conv=notrunc status=none")
        mark = alert_mark(hub)
        result = job(hub, "backup full")
        assert result.rc == 1, result.stdout + result.stderr
        assert "invalid page checksums" in result.stdout
        assert last_run(hub, "backup-full")[0] == "failed"
        assert "invalid page checksums" in alerts(hub, since=mark)
    finally:
        psql(hub, "DROP TABLE corrupt_me", db="postgres")
