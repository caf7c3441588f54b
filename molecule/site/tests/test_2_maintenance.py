"""The scheduled maintenance as the operator checks it: cron, hubctl, its effects, its alerts."""

import datetime
import json
import time

from conftest import HUBCTL, alerts, psql, run_cron_now, run_metrics_now, secret

# The hub only: the off-site backup host has its own tests (test_6_backup.py).
testinfra_hosts = ["ansible://hub_db"]


def test_cron_runs_the_seeds_schedule_as_the_maintenance_user(host):
    cron = host.file("/etc/cron.d/hub-maintenance")
    assert cron.user == "root" and cron.mode == 0o644
    lines = [line.split(None, 6) for line in cron.content_string.splitlines() if line and not line.startswith("#")]
    jobs = {fields[6].split()[1]: fields for fields in lines}
    assert jobs["daily"][:6] == ["0", "3", "*", "*", "*", "hubmaint"]
    assert jobs["partitions"][:6] == ["0", "2", "1", "*", "*", "hubmaint"]
    assert jobs["daily"][6] == "/usr/local/bin/hubctl daily --wait 7200 >> /var/log/hub/daily.log 2>&1"
    assert jobs["partitions"][6] == "/usr/local/bin/hubctl partitions --wait 7200 >> /var/log/hub/partitions.log 2>&1"
    # The marker the DR drill measures its RPO by (test_7_drill.py).
    assert jobs["marker"][:6] == ["*/5", "*", "*", "*", "*", "hubmaint"]
    assert jobs["metrics"][:6] == ["*", "*", "*", "*", "*", "hubmaint"]
    assert jobs["metrics"][6] == (
        "/usr/local/bin/hubctl metrics --textfile /var/lib/hub/metrics/hub.prom --slow-seconds 1.0"
        " --wal-queue-max-mb 80 --volume data=/var/lib/postgresql --volume repo1=/var/lib/pgbackrest --stanza hub"
        " >> /var/log/hub/metrics.log 2>&1")
    assert jobs["wal-check"][:6] == ["*/15", "*", "*", "*", "*", "hubmaint"]
    assert jobs["wal-check"][6] == (
        "/usr/local/bin/hubctl wal-check --textfile /var/lib/hub/metrics/hub_wal.prom --stanza hub --repair-repo 1"
        " >> /var/log/hub/wal-check.log 2>&1")
    assert host.service("cron").is_running and host.service("cron").is_enabled


def prom_samples(text: str) -> dict:
    """{'name{labels}': value} of a textfile's samples."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def test_cron_writes_the_metrics_file_with_every_source_read(host):
    """Cron's own run (not one started by the test): the file is fresh, every source was read,
    and what it says agrees with hubctl status."""
    prom = "/var/lib/hub/metrics/hub.prom"
    wait = host.run("for i in $(seq 1 75); do "
                    f"[ -f {prom} ] && [ $(( $(date +%s) - $(stat -c %Y {prom}) )) -lt 90 ] && exit 0; "
                    "sleep 2; done; exit 1")
    assert wait.rc == 0, host.run("tail -n 20 /var/log/hub/metrics.log").stdout
    assert host.file("/var/lib/hub/metrics").user == "hubmaint"
    assert host.file(prom).mode == 0o644
    assert host.file("/var/lib/hub/metrics/hub.state.json").mode == 0o600
    samples = prom_samples(host.file(prom).content_string)
    sources = {k: v for k, v in samples.items() if k.startswith("hub_metrics_source_up")}
    assert sources == {f'hub_metrics_source_up{{source="{name}"}}': 1.0 for name in
                       ["database", "jobs", "tables", "archiver", "capacity", "statements",
                        "pgbackrest", "volume_data", "volume_repo1"]}, sources
    for name, table in status(host)["tables"].items():
        assert samples[f'hub_partitions_months_ahead{{table="{name}"}}'] == table["months_ahead"]
        assert samples[f'hub_default_partition_rows{{table="{name}"}}'] == table["default_rows"]
    assert samples['hub_volume_free_bytes{path="/var/lib/postgresql",volume="data"}'] > 0
    assert samples["hub_wal_queue_max_bytes"] == 80 * 1024 * 1024
    # pg_wal keeps recycled segments (min_wal_size); the queue is what waits to be archived.
    assert samples["hub_wal_bytes"] > 0
    assert 0 <= samples["hub_wal_ready_bytes"] < samples["hub_wal_queue_max_bytes"]


def test_the_schedule_is_in_seoul_time(host):
    assert host.run("date +%Z").stdout.strip() == "KST"


def status(host) -> dict:
    result = host.run(f"{HUBCTL} status --json")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def test_hubctl_status_reports_partitions_ahead_and_no_stray_rows(host):
    report = status(host)
    assert sorted(report["tables"]) == sorted(
        ["v1_hub_work_allocations", "v1_hub_client_activity_logs", "v1_hub_proxy_toggle_logs", "v1_hub_work_slots_history"]
    )
    for name, table in report["tables"].items():
        assert table["months_ahead"] >= 3, name
        assert table["default_rows"] == 0, name
    assert report["lock"]["held"] is False


def test_dry_run_changes_nothing(host):
    count = "SELECT count(*) FROM pg_inherits"
    runs = "SELECT count(*) FROM hub_job_runs"
    before = (psql(host, count), psql(host, runs))
    later = (datetime.date.today() + datetime.timedelta(days=400)).isoformat()
    result = host.run(f"{HUBCTL} --dry-run --today {later} daily")
    assert result.rc == 0, result.stdout + result.stderr
    assert "would_create" in result.stdout
    assert (psql(host, count), psql(host, runs)) == before


def test_password_stays_in_the_password_file(host):
    pgpass = host.file("/etc/hub/pgpass")
    assert pgpass.user == "hubmaint" and pgpass.mode == 0o600
    config = host.file("/etc/hub/hubctl.conf")
    assert config.mode == 0o640 and config.group == "hubmaint"
    assert secret("hub_maint") not in config.content_string
    assert secret("hub_maint") not in host.file("/etc/cron.d/hub-maintenance").content_string


def assert_verify_full_against(host, ca_file: str) -> None:
    """hubctl on `host` verifies the hub's certificate and name against ca_file, and the same
    settings with another CA (the system's public ones) are refused by the server's certificate."""
    config = host.file("/etc/hub/hubctl.conf").content_string
    assert "sslmode = verify-full\n" in config
    assert f"sslrootcert = {ca_file}\n" in config
    assert "channel_binding = require\n" in config
    other = "/var/tmp/hubctl-other-ca.conf"
    host.run(f"sed 's#^sslrootcert = .*#sslrootcert = /etc/ssl/certs/ca-certificates.crt#' "
             f"/etc/hub/hubctl.conf > {other} && chgrp hubmaint {other} && chmod 0640 {other}")
    try:
        refused = host.run(f"sudo -u hubmaint /usr/local/bin/hubctl --config {other} status --json")
    finally:
        host.run(f"rm -f {other}")
    assert refused.rc != 0 and "certificate verify failed" in refused.stdout + refused.stderr, \
        refused.stdout + refused.stderr
    ok = host.run("sudo -u hubmaint /usr/local/bin/hubctl status --json")
    assert ok.rc == 0, ok.stdout + ok.stderr


def test_hubctl_verifies_the_servers_certificate_and_name(host):
    assert_verify_full_against(host, "/etc/postgresql/hub-server-ca.crt")


def test_the_offsite_hosts_hubctl_verifies_the_hub_by_name_too(host, offsite):
    # site.yml copied the hub's CA file to the off-site host, whose hubctl reaches the hub by its
    # inventory name over the network: that name is in the hub's certificate.
    ca = offsite.file("/etc/hub/hub-server-ca.crt")
    assert (ca.user, ca.mode) == ("root", 0o644)
    assert ca.content_string == host.file("/etc/postgresql/hub-server-ca.crt").content_string
    assert f"host = {host.backend.get_hostname()}\n" in offsite.file("/etc/hub/hubctl.conf").content_string
    assert_verify_full_against(offsite, "/etc/hub/hub-server-ca.crt")


def test_hubctl_imports_nothing_from_the_callers_directory(host):
    # hubctl runs as hubmaint for whoever may start it: a hubctl/ or json.py in the working
    # directory, or on PYTHONPATH, must not be imported in its place.
    planted = "/var/tmp/hubctl-planted"
    code = "raise SystemExit('PLANTED CODE RAN')"
    setup = host.run(f"rm -rf {planted} && mkdir -p {planted}/hubctl && "
                     f"for f in hubctl/__init__.py hubctl/cli.py json.py argparse.py; do echo \"{code}\" > {planted}/$f; done")
    assert setup.rc == 0, setup.stderr
    try:
        run = host.run(f"cd {planted} && sudo -u hubmaint env PYTHONPATH={planted} "
                       "/usr/local/bin/hubctl status --json")
        assert "PLANTED" not in run.stdout + run.stderr, run.stdout + run.stderr
        assert run.rc == 0, run.stderr
        assert "tables" in json.loads(run.stdout)
    finally:
        host.run(f"rm -rf {planted}")


def test_logs_are_rotated(host):
    check = host.run("logrotate --debug /etc/logrotate.d/hub")
    assert check.rc == 0, check.stderr
    assert "/var/log/hub/*.log" in host.file("/etc/logrotate.d/hub").content_string
    assert host.file("/var/log/hub").user == "hubmaint"


def test_daily_job_runs_and_leaves_a_run_record(host):
    result = host.run(f"{HUBCTL} daily")
    assert result.rc == 0, result.stdout + result.stderr
    assert "job=daily" in result.stdout
    last = psql(host, "SELECT outcome FROM hub_job_runs WHERE job = 'daily' ORDER BY id DESC LIMIT 1")
    assert last == "ok"
    assert status(host)["jobs"]["daily"]["outcome"] == "ok"
    assert status(host)["stats"]["yesterday_done"] is True


def host_today(host) -> datetime.date:
    """The hub's date (Asia/Seoul), which hubctl's days are, not the controller's."""
    return datetime.date.fromisoformat(host.run("date +%F").stdout.strip())


def test_the_daily_job_writes_the_days_size_snapshot(host):
    result = host.run(f"{HUBCTL} daily")
    assert result.rc == 0, result.stdout + result.stderr
    assert "step=capacity" in result.stdout
    today = host_today(host)
    rows = {(r.split("|")[0], r.split("|")[1]): r.split("|")[2:] for r in psql(
        host, "SELECT subject, tier, bytes, coalesce(volume_bytes::text, '') "
        f"FROM hub_size_snapshots WHERE taken_on = '{today}'").splitlines()}
    tables = ["v1_hub_client_activity_logs", "v1_hub_proxy_toggle_logs",
              "v1_hub_work_allocations", "v1_hub_work_slots_history"]
    assert set(rows) == ({(t, tier) for t in tables for tier in ("live", "archive", "cold")}
                         | {("pg_wal", "wal"), ("database", "database"), ("data", "volume"),
                            ("repo1", "volume")})
    for t in tables:
        # A partitioned parent is 0 bytes: the snapshot is the sum of its partitions.
        now = int(psql(host, "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                             f"WHERE inhparent = '{t}'::regclass"))
        assert now > 0 and abs(int(rows[(t, "live")][0]) - now) <= 256 * 1024, (t, rows[(t, "live")], now)
    size, avail = map(int, host.run("df -B1 --output=size,avail /var/lib/postgresql | tail -n 1").stdout.split())
    assert int(rows[("data", "volume")][1]) == size
    assert abs(int(rows[("data", "volume")][0]) - (size - avail)) <= 64 * 1024 * 1024
    # A rerun the same day replaces the day's rows.
    assert host.run(f"{HUBCTL} daily").rc == 0
    assert psql(host, f"SELECT count(*) FROM hub_size_snapshots WHERE taken_on = '{today}'") == str(len(rows))


def test_capacity_says_there_is_not_enough_history_on_the_first_days(host):
    assert host.run(f"{HUBCTL} daily").rc == 0
    result = host.run(f"{HUBCTL} capacity")
    assert result.rc == 0, result.stderr
    assert "not enough history yet: 1 day(s)" in result.stdout
    # Today's sizes are there, from the snapshot, with no growth yet.
    live = int(psql(host, "SELECT bytes FROM hub_size_snapshots WHERE taken_on = "
                          f"'{host_today(host)}' AND subject = 'v1_hub_work_allocations' AND tier = 'live'"))
    line = [ln for ln in result.stdout.splitlines() if "v1_hub_work_allocations (live)" in ln][0]
    assert line.split()[2:] == [f"{live / 1e6:.1f}", "MB", "-", "-"], line


def test_capacity_projects_the_data_volume_from_a_month_of_snapshots(host):
    """A month of snapshots on a straight line (written here, days before today): the report
    and the metrics give the days the fitted line crosses 70 % and 100 % of the volume."""
    assert host.run(f"{HUBCTL} daily").rc == 0
    today = host_today(host)
    first = today - datetime.timedelta(days=30)
    used, size = map(int, psql(host, "SELECT bytes, volume_bytes FROM hub_size_snapshots "
                                     f"WHERE taken_on = '{today}' AND subject = 'data'").split("|"))
    step = size // 200                      # 0.5 % of the volume a day
    base = 60 * step + step // 2            # 30.25 % on the first day: crossings fall mid-day
    live = int(psql(host, "SELECT bytes FROM hub_size_snapshots WHERE taken_on = "
                          f"'{today}' AND subject = 'v1_hub_work_allocations' AND tier = 'live'"))
    try:
        psql(host, [
            "INSERT INTO hub_size_snapshots (taken_on, subject, tier, bytes, volume_bytes) "
            f"SELECT '{first}'::date + i, 'data', 'volume', {base} + i * {step}, {size} "
            "FROM generate_series(0, 29) i",
            f"UPDATE hub_size_snapshots SET bytes = {base} + 30 * {step} "
            f"WHERE taken_on = '{today}' AND subject = 'data'",
            "INSERT INTO hub_size_snapshots (taken_on, subject, tier, bytes, index_bytes, rows) "
            f"SELECT '{first}'::date + i, 'v1_hub_work_allocations', 'live', "
            f"{live} - (30 - i) * 1000, 0, 0 FROM generate_series(0, 29) i"])
        result = host.run(f"{HUBCTL} capacity --json")
        assert result.rc == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["enough_history"] is True and report["history"]["days"] == 31
        data = report["volumes"]["data"]
        expect = {pct: (first + datetime.timedelta(days=-(-(size * pct // 100 - base) // step))).isoformat()
                  for pct in (70, 100)}
        assert data["reaches"] == {"70": expect[70], "100": expect[100]}, (data, expect)
        assert data["growth_bytes_per_day"] == step
        table = [t for t in report["tables"] if t["table"] == "v1_hub_work_allocations" and t["tier"] == "live"][0]
        assert table["growth_bytes_per_30_days"] == 30 * 1000
        text = host.run(f"{HUBCTL} capacity").stdout
        assert f"reaches 70 %: {expect[70]}" in text and f"reaches 100 %: {expect[100]}" in text
        # The metrics file carries the same date (for the dashboard), from cron's own command.
        assert run_metrics_now(host).rc == 0
        samples = prom_samples(host.file("/var/lib/hub/metrics/hub.prom").content_string)
        stamp = datetime.datetime.combine(datetime.date.fromisoformat(expect[70]), datetime.time(),
                                          datetime.timezone.utc).timestamp()
        assert samples['hub_capacity_volume_reaches_timestamp_seconds{percent="70",volume="data"}'] == stamp
    finally:
        psql(host, ["DELETE FROM hub_size_snapshots WHERE taken_on BETWEEN "
                    f"'{first}' AND '{today - datetime.timedelta(days=1)}' AND "
                    "(subject, tier) IN (('data', 'volume'), ('v1_hub_work_allocations', 'live'))",
                    f"UPDATE hub_size_snapshots SET bytes = {used} WHERE taken_on = '{today}' AND subject = 'data'"])


def test_a_row_in_a_default_partition_is_recorded_and_alerted(host):
    before = alerts(host)
    far = (datetime.date.today() + datetime.timedelta(days=3650)).isoformat()
    psql(host, ["SET ROLE hub_app", f"INSERT INTO v1_hub_proxy_toggle_logs (log_date, proxy_id, enabled) VALUES ('{far}', 1, true)"])
    try:
        result = host.run(f"{HUBCTL} partitions")
        assert result.rc == 3, result.stdout + result.stderr
        assert psql(host, "SELECT outcome FROM hub_job_runs WHERE job = 'partitions' ORDER BY id DESC LIMIT 1") == "attention"
        assert "v1_hub_proxy_toggle_logs_default" in alerts(host)[len(before):]
    finally:
        psql(host, f"DELETE FROM v1_hub_proxy_toggle_logs WHERE log_date = '{far}'")


def test_stats_rollup_counts_a_day_and_is_idempotent(host):
    day = (datetime.date.today() - datetime.timedelta(days=2)).isoformat()
    psql(
        host,
        [
            "SET ROLE hub_app",
            "INSERT INTO v1_hub_work_allocations (work_date, client_id, keyword, status, execution_time_ms) VALUES "
            f"('{day}', 'c1', 'k1', 'completed', 100), ('{day}', 'c1', 'k2', 'completed', 200), "
            f"('{day}', 'c2', 'k3', 'expired', NULL)",
        ],
    )
    try:
        for _ in range(2):
            result = host.run(f"{HUBCTL} stats --date {day}")
            assert result.rc == 0, result.stdout + result.stderr
        row = psql(
            host,
            "SELECT concat_ws(' ', count(*) OVER (), total_allocations, completed_count, expired_count, "
            f"avg_execution_time_ms, unique_clients, unique_keywords) FROM v1_hub_daily_stats WHERE stat_date = '{day}'",
        )
        assert row == "1 3 2 1 150 2 3"
    finally:
        psql(host, f"DELETE FROM v1_hub_work_allocations WHERE work_date = '{day}'")
        psql(host, f"DELETE FROM v1_hub_daily_stats WHERE stat_date = '{day}'")


def test_crons_daily_waits_for_a_held_lock_then_fills_in_the_days_it_missed(host):
    """A backup holds hubctl's lock at 03:00: cron's daily waits for it (--wait) rather than
    giving up, and rolls up yesterday and the days missing before it, oldest first."""
    today = host_today(host)
    days = [today - datetime.timedelta(days=k) for k in range(5, 0, -1)]     # -5 .. -1
    result = host.run(f"{HUBCTL} stats --date {days[0]}")                    # the anchor
    assert result.rc == 0, result.stdout + result.stderr
    psql(host, f"DELETE FROM v1_hub_daily_stats WHERE stat_date > '{days[0]}' AND stat_date < '{today}'")
    holder = "sudo -u hubmaint nohup flock /run/lock/hub/hubctl.lock sleep 8 >/dev/null 2>&1 &"
    assert host.run(holder).rc == 0
    deadline = time.monotonic() + 10
    while host.run("flock -n /run/lock/hub/hubctl.lock true").rc == 0:
        assert time.monotonic() < deadline, "the test's lock holder did not start"
        time.sleep(0.2)
    result = run_cron_now(host, "daily")
    assert result.rc == 0, result.stdout + result.stderr
    assert "step=lock" in result.stdout and "outcome=waiting" in result.stdout
    assert "outcome=taken" in result.stdout and "outcome=busy" not in result.stdout
    stats_dates = [line.split("date=", 1)[1].split()[0] for line in result.stdout.splitlines()
                   if " step=stats " in line]
    assert stats_dates == [d.isoformat() for d in days[1:]], stats_dates
    assert psql(host, f"SELECT count(*) FROM v1_hub_daily_stats WHERE stat_date >= '{days[0]}' "
                      f"AND stat_date < '{today}'") == "5"


def test_partitions_follow_a_moved_today(host):
    later = datetime.date.today() + datetime.timedelta(days=200)
    result = host.run(f"{HUBCTL} partitions --today {later.isoformat()}")
    assert result.rc == 0, result.stdout + result.stderr
    target = (later + datetime.timedelta(days=92)).isoformat()
    out = psql(
        host,
        [
            "BEGIN",
            "SET ROLE hub_app",
            f"INSERT INTO v1_hub_work_allocations (work_date, client_id, keyword) VALUES ('{target}', 'c', 'k')",
            f"SELECT tableoid::regclass FROM v1_hub_work_allocations WHERE work_date = '{target}'",
            "ROLLBACK",
        ],
    )
    assert out.splitlines()[-1] != "v1_hub_work_allocations_default"


def test_a_second_run_is_refused_as_busy_and_alerted(host):
    before = alerts(host)
    # Hold the jobs' lock, as a running job would, and start another job meanwhile.
    result = host.run(f"flock --nonblock /run/lock/hub/hubctl.lock {HUBCTL} daily")
    assert result.rc == 75, result.stdout + result.stderr
    assert "busy" in result.stdout + result.stderr
    assert psql(host, "SELECT outcome FROM hub_job_runs WHERE job = 'daily' ORDER BY id DESC LIMIT 1") == "busy"
    assert len(alerts(host)) > len(before)


def test_a_failed_job_alerts_at_once(host):
    before = alerts(host)
    service = host.run("systemctl list-units --plain --no-legend 'postgresql@*' | awk '{print $1}'").stdout.split()[0]
    host.run(f"systemctl stop {service}")
    try:
        result = host.run(f"{HUBCTL} daily")
        assert result.rc == 1, result.stdout + result.stderr
    finally:
        host.run(f"systemctl start {service}")
    new = alerts(host)[len(before):]
    assert "daily" in new


def test_the_jobs_key_reaches_the_off_site_store_for_one_command(host, offsite):
    """The jobs' SSH key (made on the hub) is authorized on the off-site host for hub-cold-store
    only, against that host's own key; the store's passphrase is readable by its user alone."""
    key = host.file("/var/lib/hub/.ssh/cold_offsite")
    assert key.user == "hubmaint" and key.mode == 0o600
    public = host.file("/var/lib/hub/.ssh/cold_offsite.pub").content_string.split()[1]
    authorized = offsite.file("/var/lib/hub-cold-store/.ssh/authorized_keys").content_string
    lines = [line for line in authorized.splitlines() if public in line]
    assert len(lines) == 1 and lines[0].startswith('restrict,command="/usr/local/bin/hub-cold-store" '), authorized
    name = offsite.backend.get_hostname()
    assert f"offsite = hubcold@{name}" in host.file("/etc/hub/hubctl.conf").content_string
    known = host.file("/var/lib/hub/.ssh/known_hosts").content_string
    host_key = offsite.file("/etc/ssh/ssh_host_ed25519_key.pub").content_string.split()[1]
    assert f"{name} ssh-ed25519 {host_key}" in known
    passphrase = offsite.file("/etc/hub-cold-store/passphrase")
    assert (passphrase.user, passphrase.group, passphrase.mode) == ("root", "hubcold", 0o440)
    assert offsite.user("hubcold").password in ("*", "!", "!*")
    listed = host.run("sudo -u hubmaint ssh -i /var/lib/hub/.ssh/cold_offsite -o IdentitiesOnly=yes -o BatchMode=yes "
                      f"-o UserKnownHostsFile=/var/lib/hub/.ssh/known_hosts hubcold@{name} list </dev/null")
    assert listed.rc == 0, listed.stderr
