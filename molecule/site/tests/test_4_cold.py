"""Cold storage on real data: an archived month goes to a verified file, and comes back.

Runs after test_3 (file order), which left the oldest month of v1_hub_work_allocations in
v1_hub_work_allocations_archive with 101 rows, 'archived' in hub_archived_partitions. Time moves
to the day that month has been over for 365 days. Checked as an operator would: a damaged file
is refused before anything is dropped; without a verified off-site copy (no store configured, or
one that does not answer) nothing is dropped; the file and its manifest, their encrypted copies
on the off-site host, the ledger, the partition gone, a restore into hub_restored with the
ledger's count and checksum, a damaged local copy replaced by the off-site one (and refused when
there is none). The restored table is dropped at the end, as docs/operations.md says."""

import datetime
import json
import shlex

import pytest
from conftest import HUBCTL, alert_mark, alerts, psql, psql_as

# The hub only: the off-site backup host has its own tests (test_6_backup.py).
testinfra_hosts = ["ansible://hub_db"]

TABLE = "v1_hub_work_allocations"
COLD_DIR = "/var/lib/hub/cold"
STORE = "sudo -u hubcold /usr/local/bin/hub-cold-store"
CHECKSUM = "coalesce(sum(('x' || substr(md5(t::text), 1, 15))::bit(60)::bigint), 0)"


@pytest.fixture(scope="module")
def month(host):
    """The month test_3 archived, what the ledger says of it, and the day it goes cold."""
    # The first month with rows: an earlier daily run (test_2) may have archived an empty one.
    first = psql(host, f"SELECT min(month) FROM hub_archived_partitions WHERE parent_table = '{TABLE}' AND state = 'archived' AND row_count > 0")
    assert first, "no archived month of v1_hub_work_allocations: test_3_archive must run first"
    start = datetime.date.fromisoformat(first)
    end = (start.replace(day=28) + datetime.timedelta(days=4)).replace(day=1)
    partition, rows, checksum = psql(
        host,
        "SELECT concat_ws(' ', partition_name, row_count, checksum) FROM hub_archived_partitions "
        f"WHERE parent_table = '{TABLE}' AND month = '{start}'",
    ).split()
    label = f"{start:%Y-%m}"
    path = f"{COLD_DIR}/{TABLE}/{TABLE}_{label}.copy.zst"
    return {
        "start": start,
        "end": end,
        "label": label,
        "today": end + datetime.timedelta(days=365),
        "partition": partition,
        "rows": int(rows),
        "checksum": checksum,
        "path": path,
        "manifest": path.replace(".copy.zst", ".manifest.json"),
        "restored": f"hub_restored.{TABLE}_p{start:%Y_%m}",
    }


def ledger(host, start) -> dict:
    return json.loads(
        psql(
            host,
            "SELECT row_to_json(l) FROM (SELECT row_count, checksum, state, cold_path, cold_bytes, cold_sha256, offsite_sha256, "
            f"exported_at IS NOT NULL AS exported FROM hub_archived_partitions WHERE parent_table = '{TABLE}' "
            f"AND month = '{start}') l",
        )
    )


def attached(host, partition) -> bool:
    return psql(host, f"SELECT to_regclass('{partition}') IS NOT NULL") == "t"


def export_line(result, month) -> str:
    """The cold_export log line of the month (other months may be eligible too)."""
    return next(
        line
        for line in result.stdout.splitlines()
        if "step=cold_export" in line and f"table={TABLE} " in line and f"month={month['label']}" in line
    )


def flip_a_byte(host, path):
    """Flip one bit in the middle of a file, as a failing disk would."""
    script = "import sys; p = sys.argv[1]; b = bytearray(open(p, 'rb').read()); b[len(b) // 2] ^= 1; open(p, 'wb').write(b)"
    result = host.run(f"python3 -c {shlex.quote(script)} {shlex.quote(path)}")
    assert result.rc == 0, result.stderr


def test_bad_input_exits_2_and_changes_nothing(host, month):
    before = ledger(host, month["start"])
    for args in ("cold restore 2025-13", f"cold export --table no_such_table --today {month['today']}", "cold thaw"):
        result = host.run(f"{HUBCTL} {args}")
        assert result.rc == 2, result.stdout + result.stderr
    assert ledger(host, month["start"]) == before


def test_a_month_not_old_enough_is_refused(host, month):
    day_before = month["today"] - datetime.timedelta(days=1)
    result = host.run(f"{HUBCTL} cold export --month {month['label']} --today {day_before}")
    assert result.rc == 1, result.stdout + result.stderr
    assert "is not cold-eligible" in result.stdout
    assert attached(host, month["partition"])
    assert ledger(host, month["start"])["state"] == "archived"


def test_dry_run_lists_the_month_and_changes_nothing(host, month):
    runs = "SELECT count(*) FROM hub_job_runs"
    before = psql(host, runs)
    result = host.run(f"{HUBCTL} --dry-run --today {month['today']} cold export")
    assert result.rc == 0, result.stdout + result.stderr
    line = export_line(result, month)
    assert "would=" in line and "outcome=dry-run" in line
    assert psql(host, runs) == before
    assert not host.file(month["path"]).exists
    assert attached(host, month["partition"])


@pytest.mark.parametrize("damage", ["flipped byte", "one row missing"])
def test_a_file_that_does_not_verify_is_kept_and_nothing_is_dropped(host, month, damage):
    """A file already at the final name (as an interrupted run leaves it) is read back before
    the partition is dropped; a damaged one stops the export and is not overwritten."""
    directory = f"{COLD_DIR}/{TABLE}"
    assert host.run(f"install -d -o hubmaint -g hubmaint -m 0750 {directory}").rc == 0
    copy = f"sudo -u postgres psql -XAtq -d hub -c {shlex.quote('COPY ' + month['partition'] + ' TO STDOUT')}"
    keep = "cat" if damage == "flipped byte" else "sed 1d"
    made = host.run(f"{copy} | {keep} | zstd -q -c > {month['path']}")
    assert made.rc == 0, made.stderr
    if damage == "flipped byte":
        flip_a_byte(host, month["path"])
    planted = host.file(month["path"]).sha256sum
    try:
        result = host.run(f"{HUBCTL} cold export --today {month['today']} --table {TABLE}")
        assert result.rc == 1, result.stdout + result.stderr
        assert "it is not overwritten" in result.stdout
        if damage == "one row missing":
            assert f"it holds {month['rows'] - 1} rows" in result.stdout
        assert host.file(month["path"]).sha256sum == planted
        assert attached(host, month["partition"])
        assert ledger(host, month["start"])["state"] == "archived"
        assert psql(host, f"SELECT count(*) FROM {month['partition']}") == str(month["rows"])
    finally:
        # What the alert tells the operator to do: move the file away, run again.
        host.run(f"rm -f {month['path']} {month['manifest']}")


def other_config(host, name: str, store: str | None) -> str:
    """A copy of hubctl's configuration with [cold] offsite set to `store`, or without [cold]."""
    path = f"/etc/hub/hubctl-{name}.conf"
    edit = (f"sed 's/^offsite = .*/offsite = {store}/'" if store else "sed '/^\\[cold\\]/,/^$/d'")
    made = host.run(f"{edit} /etc/hub/hubctl.conf > {path} && chown root:hubmaint {path} && chmod 0640 {path}")
    assert made.rc == 0, made.stderr
    has_cold = host.file(path).contains("^\\[cold\\]")
    assert has_cold == bool(store)
    return path


@pytest.mark.parametrize("store", [None, "hubcold@offsite-gone.invalid"])
def test_without_a_verified_off_site_copy_nothing_is_dropped(host, month, store):
    """The month's file is written and verified, but it would be the only copy: no store
    configured (attention, exit 3) or a store that does not answer (failed, alerted)."""
    config = other_config(host, "no-store" if store is None else "store-down", store)
    mark = alert_mark(host)
    try:
        result = host.run(f"{HUBCTL} --config {config} cold export --today {month['today']} --table {TABLE}")
        line = export_line(result, month)
        # Attention (exit 3) or failure (exit 1): either way alerted, with the reason.
        if store is None:
            assert result.rc == 3, result.stdout + result.stderr
            assert "offsite=none" in line.split()
            assert "stays archived: its file is the only copy" in alerts(host, mark)
        else:
            assert result.rc == 1, result.stdout + result.stderr
            assert "did not store" in line and "offsite-gone.invalid" in line
            assert "did not store" in alerts(host, mark)
        assert "file_state=written" in line and "dropped=" not in line
        assert attached(host, month["partition"])
        assert ledger(host, month["start"])["state"] == "archived"
        assert psql(host, f"SELECT count(*) FROM {month['partition']}") == str(month["rows"])
    finally:
        host.run(f"rm -f {config} {month['path']} {month['manifest']}")


def test_export_writes_a_verified_file_then_drops_the_partition(host, offsite, month):
    result = host.run(f"{HUBCTL} cold export --today {month['today']}")
    assert result.rc == 0, result.stdout + result.stderr
    line = export_line(result, month)
    assert "file_state=written" in line and "offsite=stored" in line
    assert f"dropped={month['partition']}" in line and f"rows={month['rows']}" in line

    data = host.file(month["path"])
    assert data.exists and data.user == "hubmaint" and data.mode == 0o640
    manifest = json.loads(host.file(month["manifest"]).content_string)
    assert manifest["table"] == TABLE and manifest["month"] == month["label"]
    assert manifest["row_count"] == month["rows"] and manifest["checksum"] == month["checksum"]
    assert manifest["sha256"] == data.sha256sum and manifest["bytes"] == data.size
    assert [c["name"] for c in manifest["columns"]][:2] == ["allocation_key", "allocated_at"]
    # The file is plain COPY text once decompressed: readable without hubctl.
    assert host.run(f"zstd -dc {month['path']} | wc -l").stdout.strip() == str(month["rows"])

    entry = ledger(host, month["start"])
    assert entry["state"] == "cold" and entry["cold_path"] == month["path"]
    assert entry["cold_sha256"] == data.sha256sum and entry["cold_bytes"] == data.size
    assert entry["exported"] is True
    assert (entry["row_count"], entry["checksum"]) == (month["rows"], month["checksum"])
    # The second copy, on the off-site host: encrypted there, and it reads back as the hub's file.
    assert entry["offsite_sha256"] == data.sha256sum
    for path in (month["path"], month["manifest"]):
        rel, sha256 = path[len(COLD_DIR) + 1:], host.file(path).sha256sum
        checked = offsite.run(f"{STORE} check {rel} {sha256}")
        assert checked.rc == 0, checked.stderr
        stored = offsite.file(f"/var/lib/hub-cold-store/files/{rel}.{sha256}.enc")
        assert stored.user == "hubcold" and stored.mode == 0o600
        assert offsite.run(f"zstd -t {stored.path}").rc != 0
    assert not attached(host, month["partition"])
    rows = psql(
        host,
        f"SELECT count(*) FROM {TABLE}_archive WHERE work_date >= '{month['start']}' AND work_date < '{month['end']}'",
    )
    assert rows == "0"
    assert host.file(f"{COLD_DIR}/{TABLE}").mode == 0o750
    assert not host.run(f"ls -A {COLD_DIR}/{TABLE} | grep tmp").stdout


def test_a_second_export_changes_nothing(host, month):
    before = (ledger(host, month["start"]), host.file(month["path"]).sha256sum)
    result = host.run(f"{HUBCTL} cold export --today {month['today']}")
    assert result.rc == 0, result.stdout + result.stderr
    assert "step=cold_export" not in result.stdout
    assert (ledger(host, month["start"]), host.file(month["path"]).sha256sum) == before


def test_restore_gives_back_the_same_rows(host, month):
    result = host.run(f"{HUBCTL} cold restore {month['label']} --today {month['today']}")
    assert result.rc == 0, result.stdout + result.stderr
    assert f"restored={month['restored']}" in result.stdout
    assert psql(host, f"SELECT count(*) || ' ' || {CHECKSUM} FROM {month['restored']} t") == (
        f"{month['rows']} {month['checksum']}"
    )
    # The reporting role can read it; the application cannot.
    readonly = psql_as(host, "hub_readonly", f"SELECT count(*) FROM {month['restored']}")
    assert readonly.rc == 0 and readonly.stdout.strip() == str(month["rows"]), readonly.stderr
    app = psql_as(host, "hub_app", f"SELECT count(*) FROM {month['restored']}")
    assert app.rc != 0 and "permission denied" in app.stderr


def job_runs(host) -> str:
    return psql(host, "SELECT count(*) || ' ' || coalesce(max(id), 0) FROM hub_job_runs")


def test_restoring_twice_is_refused_as_bad_input(host, month):
    before = (job_runs(host), alert_mark(host))
    result = host.run(f"{HUBCTL} cold restore {month['label']} --today {month['today']}")
    assert result.rc == 2, result.stdout + result.stderr
    assert "already exists" in result.stderr and f"DROP TABLE {month['restored']}" in result.stderr
    assert psql(host, f"SELECT count(*) FROM {month['restored']}") == str(month["rows"])
    assert (job_runs(host), alert_mark(host)) == before


def test_a_month_never_archived_or_not_cold_is_bad_input_not_a_page(host, month):
    """An operator's typo: exit 2 with the months that can be restored, no run record, no
    alert (before, `cold restore 1999-01` recorded a failed job and paged)."""
    before = (job_runs(host), alert_mark(host))
    result = host.run(f"{HUBCTL} cold restore 1999-01")
    assert result.rc == 2, result.stdout + result.stderr
    assert "1999-01: that month was never archived" in result.stderr
    # The months that can be restored are named (earlier tests may have made others cold too).
    listed = result.stderr.split(f"cold months of {TABLE}: ", 1)[-1].split(";")[0]
    assert month["label"] in listed.split(", "), result.stderr
    live = psql(host, f"SELECT to_char(min(month), 'YYYY-MM') FROM hub_archived_partitions WHERE parent_table = '{TABLE}' AND state = 'archived'")
    if live:
        result = host.run(f"{HUBCTL} cold restore {live}")
        assert result.rc == 2 and "is not cold (ledger state: archived)" in result.stderr, result.stderr
    assert (job_runs(host), alert_mark(host)) == before


def test_a_damaged_copy_is_replaced_by_the_off_site_one(host, month):
    psql(host, f"DROP TABLE {month['restored']}")
    good = host.file(month["path"]).sha256sum
    flip_a_byte(host, month["path"])
    damaged = host.file(month["path"]).sha256sum
    # Without the off-site store, a damaged file is refused: nothing restored.
    config = other_config(host, "no-store", None)
    try:
        result = host.run(f"{HUBCTL} --config {config} cold restore {month['label']} --today {month['today']}")
        assert result.rc == 1, result.stdout + result.stderr
        assert "is damaged" in result.stdout and "no off-site store is configured" in result.stdout
        assert "nothing restored" in result.stdout
        assert psql(host, f"SELECT to_regclass('{month['restored']}') IS NULL") == "t"
        assert host.file(month["path"]).sha256sum == damaged
    finally:
        host.run(f"rm -f {config}")
    # With it, the off-site copy takes the damaged file's place (kept aside) and the restore
    # goes on with the ledger's figures; the operator drops the table when done.
    result = host.run(f"{HUBCTL} cold restore {month['label']} --today {month['today']}")
    assert result.rc == 0, result.stdout + result.stderr
    assert f"from_offsite={TABLE}_{month['label']}.copy.zst" in result.stdout
    assert host.file(month["path"]).sha256sum == good
    aside = host.run(f"ls {month['path']}.damaged-*").stdout.split()
    assert len(aside) == 1 and host.file(aside[0]).sha256sum == damaged
    host.run(f"rm -f {aside[0]}")
    assert psql(host, f"SELECT count(*) || ' ' || {CHECKSUM} FROM {month['restored']} t") == (
        f"{month['rows']} {month['checksum']}"
    )
    psql(host, f"DROP TABLE {month['restored']}")
    assert ledger(host, month["start"])["state"] == "cold"
