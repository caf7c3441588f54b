"""What the site scenario's backup and drill tests ask pgBackRest and the hub's archiver."""

import json
import time

from conftest import psql


def info(host) -> dict:
    result = host.run("sudo -u postgres pgbackrest --stanza=hub --output=json info")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)[0]


def wal_max(host, repo: int) -> str | None:
    for a in info(host).get("archive", []):
        if a["database"]["repo-key"] == repo:
            return a.get("max")
    return None


def switch_wal_and_wait(hub) -> str:
    """Close the current WAL segment and wait until PostgreSQL reports it archived."""
    segment = psql(hub, "SELECT pg_walfile_name(pg_switch_wal())", db="postgres")
    for _ in range(120):
        done = psql(hub, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver", db="postgres")
        if done >= segment:
            return segment
        time.sleep(1)
    raise AssertionError(f"WAL segment {segment} was not archived within 120 s")


def archive_failures(hub) -> int:
    return int(psql(hub, "SELECT failed_count FROM pg_stat_archiver", db="postgres"))


def wait_for_archive_failure(hub, failed_before: int, why: str) -> None:
    """Wait until PostgreSQL reports a failed WAL archive attempt after `failed_before`."""
    for _ in range(120):
        if archive_failures(hub) > failed_before:
            return
        time.sleep(1)
    raise AssertionError(why)
