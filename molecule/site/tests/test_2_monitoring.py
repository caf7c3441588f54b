"""Monitoring end to end, as an operator relies on it: real faults on the hub, through hub.prom,
the exporters, Prometheus and Alertmanager, to a receiver that records what it gets.

The receiver (files/alert_receiver.py) is started here on the monitoring host, which in this
scenario is the off-site host. The scenario scrapes and evaluates every 5 s; alerts labelled
urgency=immediate have no grouping delay. Each test makes its own fault and undoes it, so this
file runs alone and twice in a row. It runs right after test_2_maintenance.py, before the
lifecycle tests move the date with --today and leave months that a plain daily run refuses.
"""

import json
import shlex
import time
from pathlib import Path

import pytest
from conftest import HUBCTL, SECRETS, host_of, psql, run_cron_now, run_metrics_now
from pgbackrest_info import archive_failures, switch_wal_and_wait, wait_for_archive_failure

testinfra_hosts = ["ansible://monitoring"]

RECEIVED = "/var/log/hub-test-alerts.jsonl"
RECEIVER = Path(__file__).resolve().parent.parent / "files" / "alert_receiver.py"
CA = "/etc/prometheus/hub-ca.crt"
SCRAPE_PASSWORD = "/etc/prometheus/hub-secrets/scrape.password"


@pytest.fixture(scope="module")
def monitor():
    return host_of("monitoring")


def py(host, code: str):
    """Run Python on the host; the code may read files there (a password never leaves them)."""
    return host.run("python3 -c " + shlex.quote(code))


def api(monitor, path: str) -> dict:
    out = py(monitor, "import urllib.request; print(urllib.request.urlopen("
                      f"'http://127.0.0.1:9090{path}', timeout=10).read().decode())")
    assert out.rc == 0, out.stderr
    return json.loads(out.stdout)


def metrics_now(hub):
    """The cron line of hubctl metrics, run now rather than at the next minute."""
    result = run_metrics_now(hub)
    assert result.rc in (0, 1), result.stdout + result.stderr


@pytest.fixture(scope="module")
def receiver(monitor):
    monitor.ansible("ansible.builtin.copy", f"src={RECEIVER} dest=/usr/local/lib/hub-test-receiver.py mode=0644",
                    check=False)
    # The file is kept across runs: what was delivered once is not sent again until repeat_interval.
    monitor.run("systemctl stop hub-test-receiver 2>/dev/null")
    started = monitor.run("systemd-run --unit=hub-test-receiver --collect "
                          f"python3 /usr/local/lib/hub-test-receiver.py {RECEIVED} 9095")
    assert started.rc == 0, started.stderr
    up = monitor.run("for i in $(seq 1 50); do ss -ltn | grep -q '127.0.0.1:9095 ' && exit 0; sleep 0.2; done; exit 1")
    assert up.rc == 0, monitor.run("journalctl -u hub-test-receiver --no-pager -n 20").stdout
    yield monitor
    monitor.run("systemctl stop hub-test-receiver")


def notifications(monitor, since: float) -> list[tuple[float, dict]]:
    """(arrival time, alert) of every alert in every notification that arrived after `since`."""
    f = monitor.file(RECEIVED)
    if not f.exists:
        return []
    found = []
    for line in f.content_string.splitlines():
        record = json.loads(line)
        if record["received_at"] >= since:
            found.extend((record["received_at"], a) for a in record["payload"]["alerts"])
    return found


def wait_for(monitor, since: float, name: str, status: str = "firing", timeout: int = 120, **labels) -> tuple[float, dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for at, alert in notifications(monitor, since):
            if (alert["labels"].get("alertname") == name and alert["status"] == status
                    and all(alert["labels"].get(k) == v for k, v in labels.items())):
                return at, alert
        time.sleep(1)
    firing = api(monitor, "/api/v1/alerts")["data"]["alerts"]
    raise AssertionError(f"no {status} {name} {labels} at the receiver within {timeout} s; "
                         f"Prometheus has: {[(a['labels']['alertname'], a['state']) for a in firing]}")


def test_prometheus_and_alertmanager_listen_on_localhost_only(monitor):
    listening = monitor.run("ss -ltnH").stdout
    assert "127.0.0.1:9090 " in listening and "127.0.0.1:9093 " in listening
    for port in (":9090 ", ":9093 ", ":9094 "):
        assert [ln for ln in listening.splitlines() if port in ln and "127.0.0.1" + port not in ln] == [], port


def test_every_exporter_is_scraped_over_tls_and_up(monitor):
    hub, offsite = host_of("hub_db"), host_of("backup_offsite")
    expected = {("node", hub.backend.get_hostname()), ("node", offsite.backend.get_hostname()),
                ("postgres", hub.backend.get_hostname())}
    deadline = time.time() + 60
    while True:
        targets = api(monitor, "/api/v1/targets")["data"]["activeTargets"]
        up = {(t["labels"]["job"], t["labels"]["instance"]) for t in targets if t["health"] == "up"}
        if expected <= up or time.time() > deadline:
            break
        time.sleep(2)
    assert expected <= up, [(t["labels"], t["health"], t["lastError"]) for t in targets]
    for t in targets:
        if t["labels"]["job"] in ("node", "postgres"):
            assert t["scrapeUrl"].startswith("https://"), t["scrapeUrl"]
    # The postgres exporter logs in (peer authentication, no password) and hub.prom is served.
    # Debian 13's exporter keeps its connection: after test_2_maintenance restarted PostgreSQL,
    # its first scrape may still say 0 before it reconnects, so wait for a scrape that says 1.
    deadline = time.time() + 60
    while True:
        result = api(monitor, "/api/v1/query?query=pg_up")["data"]["result"]
        if (result and result[0]["value"][1] == "1") or time.time() > deadline:
            break
        time.sleep(2)
    hub_log = hub.run("journalctl -u prometheus-postgres-exporter --no-pager -n 30").stdout
    assert result and result[0]["value"][1] == "1", (result, hub_log)
    assert api(monitor, "/api/v1/query?query=hub_metrics_timestamp_seconds")["data"]["result"]


def test_an_exporter_refuses_a_scrape_without_the_right_credentials(monitor):
    hub = host_of("hub_db").backend.get_hostname()
    out = py(monitor, f"""
import base64, json, ssl, urllib.error, urllib.request
ctx = ssl.create_default_context(cafile={CA!r})
good = "hub-scrape:" + open({SCRAPE_PASSWORD!r}).read()
def status(port, auth):
    req = urllib.request.Request("https://{hub}:%d/metrics" % port)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        return urllib.request.urlopen(req, context=ctx, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code
print(json.dumps({{str(p): [status(p, None), status(p, "hub-scrape:wrong"), status(p, good)] for p in (9100, 9187)}}))
""")
    assert out.rc == 0, out.stderr
    assert json.loads(out.stdout) == {"9100": [401, 401, 200], "9187": [401, 401, 200]}


def test_an_exporter_does_not_answer_a_host_that_is_not_the_monitoring_host(monitor):
    hub = host_of("hub_db").backend.get_hostname()
    code = ("import socket, sys\n"
            "try:\n"
            f"    socket.create_connection(({hub!r}, int(sys.argv[1])), timeout=3).close(); print('open')\n"
            "except OSError as e:\n"
            "    print('closed')\n")
    other = host_of("dr_target")
    for port in (9100, 9187):
        assert monitor.run(f"python3 -c {shlex.quote(code)} {port}").stdout.strip() == "open"
        assert other.run(f"python3 -c {shlex.quote(code)} {port}").stdout.strip() == "closed"


def test_no_password_in_a_process_list_a_log_or_a_world_readable_file(monitor):
    hub = host_of("hub_db")
    for host in (hub, monitor):
        host.ansible("ansible.builtin.copy", f"src={SECRETS / 'monitoring_scrape'} dest=/root/.scrape-secret mode=0600",
                     check=False)
        try:
            # Patterns from the file (-f), so the password is on no command line here either.
            host.run("tr -d '\\n' < /root/.scrape-secret > /root/.scrape-pattern; chmod 600 /root/.scrape-pattern")
            found = host.run("grep -rlF -f /root/.scrape-pattern /etc /var/log /var/lib/hub /var/lib/prometheus "
                             "2>/dev/null").stdout.split()
            expected = [SCRAPE_PASSWORD] if host is monitor else []
            assert found == expected, found
            assert host.file(SCRAPE_PASSWORD).mode == 0o640 if host is monitor else True
            ps = host.run("ps -eo args | grep -cF -f /root/.scrape-pattern").stdout.strip()
            assert ps == "0", "the password is in a process's arguments"
            journal = host.run("journalctl --no-pager | grep -cF -f /root/.scrape-pattern").stdout.strip()
            assert journal == "0"
        finally:
            host.run("rm -f /root/.scrape-secret /root/.scrape-pattern")
    # The exporters keep only a bcrypt hash; the postgres exporter has no password at all.
    assert "$2b$10$" in hub.file("/etc/prometheus/hub-exporters/web.yml").content_string
    source = [ln for ln in hub.file("/etc/default/prometheus-postgres-exporter").content_string.splitlines()
              if ln.startswith("DATA_SOURCE_NAME=")]
    assert len(source) == 1 and "password" not in source[0] and "host=/var/run/postgresql" in source[0]


def test_a_failed_daily_job_reaches_the_receiver_at_once_then_its_resolution(receiver):
    monitor, hub = receiver, host_of("hub_db")
    # A broken schema: the daily job's stats rollup cannot find its table.
    psql(hub, "ALTER TABLE v1_hub_daily_stats RENAME TO v1_hub_daily_stats_away")
    try:
        failed = hub.run(f"{HUBCTL} daily")
        assert failed.rc == 1, failed.stdout + failed.stderr
    finally:
        psql(hub, "ALTER TABLE v1_hub_daily_stats_away RENAME TO v1_hub_daily_stats")
    fault = time.time()
    metrics_now(hub)
    at, alert = wait_for(monitor, fault, "HubArchiveJobFailed", timeout=60)
    assert alert["labels"]["urgency"] == "immediate"
    assert alert["annotations"]["runbook"].startswith("docs/monitoring.md#hubarchivejobfailed")
    print(f"HubArchiveJobFailed reached the receiver {at - fault:.1f} s after the failed run")
    # Two evaluation intervals (5 s each) after the file was scraped, plus a scrape.
    assert at - fault < 30
    fixed = time.time()
    ok = hub.run(f"{HUBCTL} daily")
    assert ok.rc == 0, ok.stdout + ok.stderr
    metrics_now(hub)
    wait_for(monitor, fixed, "HubArchiveJobFailed", status="resolved", timeout=150)


def test_a_statement_of_one_and_a_half_seconds_gives_the_slow_query_alert(receiver):
    """The statement reaches hub.prom and Prometheus' alert, and the alert the receiver. (Another
    slow statement of the last 10 minutes, a daily run's say, may have fired it already: then
    Alertmanager sent it then, and again only after repeat_interval.)"""
    monitor, hub = receiver, host_of("hub_db")
    psql(hub, "SELECT pg_sleep(1.5)")
    # Cron's minute run may prove the statement first; this run then proves nothing new, and
    # the file still says 1.5 s because the slowest time is held for 5 minutes (it said 0.007 s
    # before the hold, in a CI run on Debian 12).
    metrics_now(hub)
    assert samples(hub)["hub_statement_slowest_seconds"] >= 1.5
    deadline = time.time() + 60
    while True:
        firing = [a for a in api(monitor, "/api/v1/alerts")["data"]["alerts"]
                  if a["labels"]["alertname"] == "HubSlowQuery" and a["state"] == "firing"]
        if (firing and float(firing[0]["value"]) >= 1.5) or time.time() > deadline:
            break
        time.sleep(2)
    assert firing and float(firing[0]["value"]) >= 1.5, firing
    # Delivered at some point since the receiver first started (Alertmanager retries a delivery
    # that failed, so one that fired before the receiver ran arrives too).
    wait_for(monitor, 0, "HubSlowQuery", timeout=60)


def samples(hub) -> dict:
    text = hub.file("/var/lib/hub/metrics/hub.prom").content_string
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln and not ln.startswith("#")}


def test_repo1s_next_full_is_measured_by_the_newest_full_in_repo1():
    """hub_backup_full_repo_bytes, which HubRepo1NoRoomForFull compares with repo1's free space,
    is what pgBackRest itself says the newest full backup takes in repo1."""
    hub = host_of("hub_db")
    metrics_now(hub)
    info = json.loads(hub.check_output("sudo -u postgres pgbackrest --stanza=hub --repo=1 --output=json info"))
    fulls = sorted((b for b in info[0]["backup"] if b["type"] == "full" and not b.get("error")),
                   key=lambda b: b["timestamp"]["stop"])
    assert fulls, "no full backup in repo1"
    expected = fulls[-1]["info"]["repository"]["size"]
    assert expected > 0
    assert samples(hub)['hub_backup_full_repo_bytes{repo="1"}'] == expected
    free = samples(hub)['hub_volume_free_bytes{path="/var/lib/pgbackrest",volume="repo1"}']
    assert free > 1.2 * expected, "the scenario's repo1 already lacks room for a full"


def test_the_data_volume_filled_past_70_percent_gives_the_disk_alert(receiver):
    monitor, hub = receiver, host_of("hub_db")
    key = 'hub_volume_{}_bytes{{path="/var/lib/postgresql",volume="data"}}'
    metrics_now(hub)
    size, free = samples(hub)[key.format("size")], samples(hub)[key.format("free")]
    assert 1 - free / size < 0.70, "the scenario's data volume is already past the threshold"
    fill = int(free - 0.25 * size)  # leaves 25 % free: 75 % used
    start = time.time()
    hub.run(f"fallocate -l {fill} /var/lib/postgresql/hub-test-fill")
    try:
        metrics_now(hub)
        _, alert = wait_for(monitor, start, "HubVolumeFull", timeout=60, volume="data")
        assert "is 7" in alert["annotations"]["summary"], alert["annotations"]
    finally:
        hub.run("rm -f /var/lib/postgresql/hub-test-fill")
    emptied = time.time()
    metrics_now(hub)
    wait_for(monitor, emptied, "HubVolumeFull", status="resolved", timeout=90, volume="data")


def test_a_table_past_the_scenarios_low_threshold_gives_the_table_size_alert(receiver):
    """The scenario sets monitoring_table_bytes_max to 8 MB; the proxy log grows past it."""
    monitor, hub = receiver, host_of("hub_db")
    key = 'hub_table_bytes{table="v1_hub_proxy_toggle_logs",tier="live"}'
    metrics_now(hub)
    assert samples(hub)[key] < 8_000_000
    start = time.time()
    psql(hub, "INSERT INTO v1_hub_proxy_toggle_logs (proxy_id, enabled, reason) "
              "SELECT 1 + i % 100, i % 2 = 0, 'hub-test-size ' || repeat('x', 60) FROM generate_series(1, 120000) i")
    try:
        psql(hub, "ANALYZE v1_hub_proxy_toggle_logs")
        metrics_now(hub)
        assert samples(hub)[key] > 8_000_000
        _, alert = wait_for(monitor, start, "HubTableTooLarge", timeout=60, table="v1_hub_proxy_toggle_logs")
        assert alert["labels"]["tier"] == "live"
    finally:
        psql(hub, "DELETE FROM v1_hub_proxy_toggle_logs WHERE reason LIKE 'hub-test-size %'")
        psql(hub, "VACUUM FULL v1_hub_proxy_toggle_logs")
    shrunk = time.time()
    metrics_now(hub)
    wait_for(monitor, shrunk, "HubTableTooLarge", status="resolved", timeout=90, table="v1_hub_proxy_toggle_logs")



def wal_check_now(hub, *expect_rc: int) -> str:
    """hubctl wal-check's cron line now (--settle-seconds as the cron line has it); its output."""
    result = run_cron_now(hub, "wal-check")
    assert result.rc in expect_rc, result.stdout + result.stderr
    return result.stdout


def test_a_wal_segment_lost_from_repo1_gives_the_gap_alert_at_once_then_its_resolution(receiver):
    """A segment archived after repo1's newest backup disappears from the repository (what a
    drop past the queue limit or a lost file leaves): pgBackRest's own reports stay healthy,
    hubctl wal-check finds the hole, and the alert reaches the receiver; with the file back the
    next check resolves it. (test_6_backup.py makes a real drop and shows both repositories.)"""
    monitor, hub = receiver, host_of("hub_db")
    for _ in range(3):
        # A commit record first: a switch with no WAL written since the last one closes nothing.
        psql(hub, "SELECT txid_current()", db="postgres")
        segment = switch_wal_and_wait(hub)
    # The segment before the newest: segments on both sides of the hole are in repo1.
    names = hub.check_output(
        "find /var/lib/pgbackrest/archive/hub -name '00000001????????????????-*' -printf '%f\\n' | sort").split()
    held = [n for n in names if n[:24] <= segment]
    lost = held[-2]
    path = hub.check_output(f"find /var/lib/pgbackrest/archive/hub -name '{lost}' -print")
    start = time.time()
    hub.run(f"mv {path} /var/tmp/")
    try:
        out = wal_check_now(hub, 3)
        assert f"first_gap_since_newest={lost[:24]}" in out, out
        prom = hub.file("/var/lib/hub/metrics/hub_wal.prom").content_string
        assert 'hub_wal_archive_missing_segments{repo="1",since="newest_backup"} 1' in prom, prom
        assert 'hub_wal_archive_missing_segments{repo="2",since="newest_backup"} 0' in prom, prom
        at, alert = wait_for(monitor, start, "HubWalArchiveGap", timeout=60, repo="1")
        assert alert["labels"]["urgency"] == "immediate"
        print(f"HubWalArchiveGap reached the receiver {at - start:.1f} s after the segment was lost")
    finally:
        hub.run(f"mv /var/tmp/{lost} {path}")
    resolved = time.time()
    # Exit 3 stays possible after test_6_backup.py's drop, whose hole is in the older history.
    wal_check_now(hub, 0, 3)
    prom = hub.file("/var/lib/hub/metrics/hub_wal.prom").content_string
    assert 'hub_wal_archive_missing_segments{repo="1",since="newest_backup"} 0' in prom, prom
    wait_for(monitor, resolved, "HubWalArchiveGap", status="resolved", timeout=90, repo="1")


def test_the_offsite_repository_unreachable_gives_the_wal_archiving_alert_at_once(receiver):
    monitor, hub, offsite = receiver, host_of("hub_db"), host_of("backup_offsite")
    failed_before = archive_failures(hub)
    start = time.time()
    offsite.run("systemctl stop pgbackrest.service")
    try:
        psql(hub, "SELECT pg_switch_wal()", db="postgres")
        wait_for_archive_failure(hub, failed_before, "archiving did not fail with the off-site server stopped")
        seen = time.time()
        metrics_now(hub)
        took = time.time() - seen
        # pgBackRest's info gives up on the unreachable repository within seconds (its
        # --io-timeout), so the file is still written every minute, repo1's figures in it.
        prom = hub.file("/var/lib/hub/metrics/hub.prom").content_string
        assert 'hub_backup_repo_ok{repo="1"} 1' in prom and 'hub_backup_repo_ok{repo="2"} 0' in prom
        assert 'hub_metrics_source_up{source="pgbackrest"} 1' in prom
        at, alert = wait_for(monitor, start, "HubWalArchiveFailing", timeout=60)
        assert alert["labels"]["urgency"] == "immediate"
        print(f"HubWalArchiveFailing reached the receiver {at - seen:.1f} s after PostgreSQL reported the "
              f"failed archive ({seen - start:.0f} s after the off-site server stopped; hubctl metrics "
              f"took {took:.1f} s)")
    finally:
        offsite.run("systemctl start pgbackrest.service")
    # Its resolution waits for the queued WAL to reach repo2 (test_6_backup.py times that).


def test_a_daily_job_that_has_not_succeeded_for_27_hours_gives_the_dead_mans_alert(receiver):
    """No daily run for 27 hours, as the run records show it: every daily record moved 27 hours
    back (and forward again afterwards); nothing else about the hub changes."""
    monitor, hub = receiver, host_of("hub_db")
    shift = "UPDATE hub_job_runs SET started_at = started_at {} interval '27 hours', " \
            "finished_at = finished_at {} interval '27 hours' WHERE job = 'daily'"
    start = time.time()
    psql(hub, shift.format("-", "-"))
    try:
        metrics_now(hub)
        _, alert = wait_for(monitor, start, "HubDailyJobMissed", timeout=60)
        assert alert["labels"]["urgency"] == "immediate"
    finally:
        psql(hub, shift.format("+", "+"))
    back = time.time()
    metrics_now(hub)
    wait_for(monitor, back, "HubDailyJobMissed", status="resolved", timeout=150)


def cert_check_now(host):
    """The cron line of hub-cert-expiry, run now rather than at the next hour."""
    line = [ln for ln in host.file("/etc/cron.d/hub-cert-expiry").content_string.splitlines()
            if "hub-cert-expiry --textfile" in ln][0]
    command = line.split(" root ", 1)[1].split(" 2>&1", 1)[0]
    result = host.run(command)
    assert result.rc == 0, result.stdout + result.stderr


def test_every_watched_hosts_certificates_reach_prometheus_with_their_dates(monitor):
    hub, offsite = host_of("hub_db"), host_of("backup_offsite")
    pg_cert = hub.run("ls /etc/postgresql/*/main/tls/server.crt").stdout.strip()
    expected = {hub.backend.get_hostname(): ["/etc/prometheus/hub-exporters/host.crt", "/etc/pgbackrest/tls/ca.crt",
                                             "/etc/pgbackrest/tls/host.crt", pg_cert],
                offsite.backend.get_hostname(): ["/etc/prometheus/hub-exporters/host.crt", "/etc/pgbackrest/tls/ca.crt",
                                                 "/etc/pgbackrest/tls/host.crt"]}
    result = api(monitor, "/api/v1/query?query=hub_certificate_not_after_timestamp_seconds")["data"]["result"]
    found = {}
    for r in result:
        found.setdefault(r["metric"]["instance"], {})[r["metric"]["path"]] = float(r["value"][1])
    assert {i: sorted(p) for i, p in found.items()} == {i: sorted(p) for i, p in expected.items()}
    for host in (hub, offsite):
        name = host.backend.get_hostname()
        for path in expected[name]:
            end = host.run(f"date -d \"$(openssl x509 -noout -enddate -in {path} | cut -d= -f2)\" +%s").stdout
            assert found[name][path] == float(end), (name, path)


def test_a_certificate_expiring_within_30_days_gives_the_certificate_alert(receiver):
    monitor, hub = receiver, host_of("hub_db")
    path = "/etc/pgbackrest/tls/zz-hub-test-expiring.crt"
    made = hub.run("openssl req -x509 -newkey rsa:2048 -nodes -keyout /dev/null -days 10 "
                   f"-subj /CN=hub-test-expiring -out {path}")
    assert made.rc == 0, made.stderr
    start = time.time()
    try:
        cert_check_now(hub)
        _, alert = wait_for(monitor, start, "HubCertificateExpiring", timeout=90, path=path)
        assert alert["labels"]["subject"] == "CN=hub-test-expiring"
        assert alert["annotations"]["runbook"].startswith("docs/monitoring.md#hubcertificateexpiring")
    finally:
        hub.run(f"rm -f {path}")
        cert_check_now(hub)
    wait_for(monitor, time.time() - 1, "HubCertificateExpiring", status="resolved", timeout=150, path=path)


def test_an_exporter_stopped_gives_the_exporter_down_alert_then_its_resolution(receiver):
    """The off-site host's node exporter stopped: after the scenario's 15 s (production: 2 min)
    of failed scrapes the alert names that exporter; started again, the alert resolves."""
    monitor, offsite = receiver, host_of("backup_offsite")
    instance = offsite.backend.get_hostname()
    start = time.time()
    offsite.run("systemctl stop prometheus-node-exporter")
    try:
        at, alert = wait_for(monitor, start, "HubExporterDown", timeout=90, job="node", instance=instance)
        assert alert["labels"]["severity"] == "critical"
        print(f"HubExporterDown reached the receiver {at - start:.1f} s after the exporter stopped")
    finally:
        offsite.run("systemctl start prometheus-node-exporter")
    back = time.time()
    wait_for(monitor, back, "HubExporterDown", status="resolved", timeout=120, job="node", instance=instance)
