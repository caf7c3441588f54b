"""The off-site history that a compromised hub cannot erase (docs/decisions.md, docs/security.md).

Root on the hub holds a TLS certificate that repo2's server accepts for the whole stanza: with it
the hub deletes repo2's stanza, and the test does so. It then tries every other credential and
path the hub holds against the off-site host (the SSH keys on the hub, the cold store's forced
command, repo2's server on the snapshots' directory), shows the off-site host's snapshot is
intact, restores it as docs/runbook-dr.md says, and leaves repo2 as the snapshot had it. The
drills of test_7_drill.py then restore the hub from that repo2: the last good backup, and the WAL
archived since, with no hole.

Runs after test_6_backup.py (repo2 then holds its fulls and incrementals) and before the drills.
"""

import json
import re

from conftest import HUBCTL, alert_mark, alerts, psql
from pgbackrest_info import info, switch_wal_and_wait, wal_max

SNAPSHOTS = "/var/lib/pgbackrest-offsite-snapshots"
TOOL = "/usr/local/sbin/hub-repo-snapshot"
WALCHECK = "/var/lib/hub/wal-check/hub_wal.prom"
PGBR = "sudo -u postgres pgbackrest --stanza=hub"


def repo2_labels(host) -> list[str]:
    return sorted(b["label"] for b in info(host).get("backup", []) if b["database"]["repo-key"] == 2)


def ssh(hub, key: str, where: str, command: str):
    return hub.run(f"ssh -i {key} -o BatchMode=yes -o StrictHostKeyChecking=no "
                   f"-o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 {where} {command}")


def snapshots(offsite) -> list[dict]:
    result = offsite.run(f"{TOOL} list")
    assert result.rc == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_site_yml_took_the_first_snapshot_into_a_directory_only_root_reads(offsite):
    d = offsite.file(SNAPSHOTS)
    assert (d.user, d.group, d.mode) == ("root", "root", 0o700)
    assert offsite.file(TOOL).user == "root" and offsite.file(TOOL).mode == 0o755
    taken = snapshots(offsite)
    assert taken and taken[0]["restorable"], taken
    # The jobs' user may take a snapshot through sudo, and do nothing else as root with the tool.
    refused = offsite.run(f"sudo -u hubmaint sudo -n {TOOL} restore {taken[0]['snapshot']}")
    assert refused.rc != 0 and "password is required" in refused.stderr, refused.stderr
    assert snapshots(offsite) == taken


def test_root_on_the_hub_cannot_erase_the_offsite_history(hub, offsite):
    before = repo2_labels(hub)
    assert any(label.endswith("F") for label in before), before
    # The attacker stops pgBackRest on the hub (stanza-delete requires it); WAL waits in pg_wal
    # meanwhile, so the restored repo2 misses no segment and the drills replay to its end.
    assert hub.run(f"{PGBR} stop").rc == 0
    try:
        taken = offsite.run(f"{HUBCTL} backup snapshot")
        assert taken.rc == 0, taken.stdout + taken.stderr
        good = snapshots(offsite)[-1]
        assert sorted(b["label"] for b in good["backups"]) == before and good["restorable"]

        # 1. The hub's certificate on repo2's server: it deletes the stanza, every backup and WAL.
        deleted = hub.run(f"{PGBR} --repo=2 stanza-delete --force")
        assert deleted.rc == 0, deleted.stdout + deleted.stderr
        gone = offsite.run("sudo -u postgres pgbackrest --stanza=hub --output=json info")
        assert json.loads(gone.stdout)[0].get("backup", []) == [], gone.stdout
        # ... but not outside repo2's path, where the snapshots are.
        for path in (SNAPSHOTS, f"../{SNAPSHOTS.rsplit('/', 1)[1]}"):
            listed = hub.run(f"{PGBR} --repo=2 --recurse repo-ls {path}")
            assert listed.rc != 0 and good["snapshot"] not in listed.stdout, listed.stdout
        # 2. Every private key on the hub (the jobs' SSH key, the TLS keys of pgBackRest,
        #    PostgreSQL and the exporters, any SSH key), as each user that could matter on the
        #    off-site host: none logs in.
        keys = hub.check_output(
            "find / -xdev -type f -size -16k \\( -path '*/.ssh/*' -o -path '/etc/ssh/*' -o -path '/etc/pgbackrest/*' "
            "-o -path '/etc/postgresql/*' -o -path '/etc/prometheus/*' -o -path '/etc/ssl/private/*' \\) "
            "-exec grep -l 'PRIVATE KEY' {} +").split()
        cold_key = [k for k in keys if k.endswith("/.ssh/cold_offsite")]
        assert len(cold_key) == 1 and "/etc/pgbackrest/tls/host.key" in keys and len(keys) >= 4, keys
        # 3. The one key that opens a door: the cold store's forced command, which takes no
        #    command of the caller's (`list` answers: the store is reachable with it). First,
        #    before the failed logins below: OpenSSH 10's sshd (Debian 13) penalises a source
        #    after a few failures, and then closes its connections before any key is tried.
        offsite_name = offsite.backend.get_hostname()
        assert ssh(hub, cold_key[0], f"hubcold@{offsite_name}", "list").rc == 0
        for command in ("true", f"rm -rf {SNAPSHOTS}", f"sh -c 'rm -rf {SNAPSHOTS}'"):
            refused = ssh(hub, cold_key[0], f"hubcold@{offsite_name}", command)
            assert refused.rc == 2 and "refused" in refused.stderr, (command, refused.stderr)
        denied = []
        for key in keys:
            for user in ("root", "postgres", "hubmaint", "hubcold"):
                if user == "hubcold" and key in cold_key:
                    continue
                login = ssh(hub, key, f"{user}@{offsite_name}", "true")
                assert login.rc == 255, (key, user, login.stdout, login.stderr)
                assert re.search(r"Permission denied|Connection (reset|closed)", login.stderr), login.stderr
                denied.append("Permission denied" in login.stderr)
        assert denied[0], "the first login was not even refused by authentication"

        # The next snapshot takes repo2 as it is now, empty, and says so to a person; the last
        # good one stays (retention never prunes it).
        mark = alert_mark(offsite)
        emptied = offsite.run(f"{HUBCTL} backup snapshot")
        assert emptied.rc == 3, emptied.stdout + emptied.stderr
        assert "repo2 lists no full backup" in alerts(offsite, since=mark)
        empty = snapshots(offsite)[-1]
        assert empty["lost_fulls"] == sorted(b["label"] for b in good["backups"] if b["type"] == "full"), empty
        assert [s["snapshot"] for s in snapshots(offsite)][-2] == good["snapshot"]

        # The operator puts the last good snapshot back (docs/runbook-dr.md).
        restored = offsite.run(f"{TOOL} restore {good['snapshot']}")
        assert restored.rc == 0, restored.stderr
        assert json.loads(restored.stdout)["restored"] == good["snapshot"]
        assert offsite.service("pgbackrest").is_running
    finally:
        hub.run(f"{PGBR} start")
        # sshd's penalty on the hub's address (OpenSSH 10) would hold back its cold copies.
        offsite.run("systemctl restart ssh.service")
    assert repo2_labels(hub) == before
    # Archiving resumes into the restored repo2 with the WAL queued meanwhile: no hole.
    segment = switch_wal_and_wait(hub)
    assert (wal_max(hub, 2) or "")[-24:] >= segment
    # The off-site wal-check finds no hole since repo2's newest backup (an older one, from
    # test_6_backup.py's dropped WAL, stays in the history: exit 3, attention).
    checked = offsite.run(f"{HUBCTL} wal-check --repo 2 --textfile {WALCHECK}")
    assert checked.rc in (0, 3), checked.stdout + checked.stderr
    prom = offsite.file(WALCHECK).content_string
    assert re.search(r'^hub_wal_archive_missing_segments\{repo="2",since="newest_backup"\} 0$', prom, re.M), prom
    assert psql(hub, "SELECT outcome FROM hub_job_runs WHERE job = 'backup-snapshot' "
                     "ORDER BY id DESC LIMIT 1") == "attention"
