"""Fifteen months of the hub's life, one daily run a month, against the real server.

Runs last (file order). Time moves with --today, starting two years after the real date so the
walk's days hold only the walk's rows: each step inserts every day since the step before
(20 allocations a day, a known mix), runs `hubctl daily` as cron would, and checks what an
operator relies on:

- partitions: every month from today to four months ahead is attached to the live table;
- archive: months whose end is 90 days past leave the live table whole; live + archive + cold
  hold every row once;
- stats: yesterday's row of v1_hub_daily_stats has the figures of the rows inserted;
- cold storage: months older than 365 days are in files, and a restore gives them back;
- late rows, a job killed or its backend terminated in the middle of a move, a run refused
  while another holds the lock, and the archive under a steady insert load;
- a schema change: on the step where months are live, archived and cold, a migration adds a
  column to the table and its archive twin, and the walk goes on: the next month goes cold
  with the new column in its file, a month is archived in the new shape, a late row joins an
  old-shape month, a late row of a cold month goes to a supplement file beside the month's,
  both cold files restore (the supplement with its month), and every ledger figure still holds.

Interrupting at a chosen point: a session holds a lock the archive needs (SHARE UPDATE
EXCLUSIVE on the archive table blocks ATTACH, which runs after DETACH in the same
transaction), hubctl runs with a long lock_timeout, and the test strikes once
pg_stat_activity shows it waiting there.
"""

import base64
import datetime
import json
import os
import time

import pytest
from conftest import HUBCTL, alerts, psql

# The hub only: the off-site backup host has its own tests (test_6_backup.py).
testinfra_hosts = ["ansible://hub_db"]

SLOW_CONFIG = "/etc/hub/hubctl-slow.conf"
# pgrep/pkill -f pattern for hubctl runs with SLOW_CONFIG that does not match the shell running it.
SLOW_RUNS = "'--config /etc/hub/hubctl-slo[w].conf'"
TABLE = "v1_hub_work_allocations"
PER_DAY = 20
STEPS = 15
ARCHIVE_AFTER = 90
COLD_AFTER = 365
BLOCKER = "hub-test-blocker"


def add_months(day: datetime.date, n: int) -> datetime.date:
    index = day.year * 12 + day.month - 1 + n
    return datetime.date(index // 12, index % 12 + 1, 1)


# First month of the walk. (HUB_WALK_SHIFT moves it further, to rerun on a used instance.)
START = add_months(datetime.date.today(), 24 + int(os.environ.get("HUB_WALK_SHIFT", "0")))
DAYS = [START + datetime.timedelta(days=4) if k == 0 else add_months(START, k) + datetime.timedelta(days=4)
        for k in range(STEPS)]                          # the 5th of each month: the "today" of each step


WALK_ROWS = f"client_id LIKE 'walk-%' AND work_date >= '{START}'"



def expected_day() -> dict:
    """The figures of one walk day (rows i = 0..19, see insert_days)."""
    completed = [100 + 10 * i for i in range(PER_DAY) if i % 5 < 3]
    return {
        "total_allocations": PER_DAY,
        "completed_count": len(completed),
        "expired_count": sum(1 for i in range(PER_DAY) if i % 5 == 3),
        "avg_execution_time_ms": round(sum(completed) / len(completed)),
        "unique_clients": 6,
        "unique_keywords": 7,
    }


def insert_days(host, first: datetime.date, end: datetime.date) -> int:
    """Insert the walk's rows for first <= day < end, as the application role."""
    psql(host, [
        "SET ROLE hub_app",
        f"INSERT INTO {TABLE} (work_date, allocated_at, finished_at, status, execution_time_ms, client_id, keyword) "
        "SELECT d::date, d + interval '1 hour' * (i % 24), "
        "       CASE WHEN i % 5 < 4 THEN d + interval '2 hours' END, "
        "       (ARRAY['completed','completed','completed','expired','allocated'])[i % 5 + 1], "
        "       CASE WHEN i % 5 < 3 THEN 100 + 10 * i END, 'walk-c' || (i % 6), 'walk-k' || (i % 7) "
        f"FROM generate_series(DATE '{first}', DATE '{end}' - 1, interval '1 day') d, "
        f"generate_series(0, {PER_DAY - 1}) i",
    ])
    return (end - first).days * PER_DAY


def hubctl(host, args: str, config: str = "", expect: int = 0):
    option = f"--config {config} " if config else ""
    result = host.run(f"{HUBCTL} {option}{args}")
    assert result.rc == expect, f"hubctl {args}: exit {result.rc}\n{result.stdout}\n{result.stderr}"
    return result


def state(host) -> dict:
    """One read of everything the walk checks, as JSON."""
    return json.loads(psql(host, f"""
        SELECT json_build_object(
          'live', (SELECT coalesce(json_agg(substring(pg_get_expr(c.relpartbound, c.oid) FROM '\\d{{4}}-\\d{{2}}-01')), '[]')
                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = '{TABLE}'::regclass
                     AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'),
          'archive', (SELECT coalesce(json_agg(substring(pg_get_expr(c.relpartbound, c.oid) FROM '\\d{{4}}-\\d{{2}}-01')), '[]')
                   FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = '{TABLE}_archive'::regclass),
          'ledger', (SELECT coalesce(json_object_agg(month, json_build_object('rows', row_count, 'state', state)), '{{}}')
                   FROM hub_archived_partitions WHERE parent_table = '{TABLE}'),
          'walk_live', (SELECT count(*) FROM {TABLE} WHERE {WALK_ROWS}),
          'walk_archive', (SELECT count(*) FROM {TABLE}_archive WHERE {WALK_ROWS}),
          'walk_keys', (SELECT count(DISTINCT allocation_key) FROM
                          (SELECT allocation_key FROM {TABLE} WHERE {WALK_ROWS}
                           UNION ALL SELECT allocation_key FROM {TABLE}_archive WHERE {WALK_ROWS}) k),
          'default_rows', (SELECT count(*) FROM {TABLE}_default))
    """))


def cold_rows(host, since: datetime.date) -> int:
    """Rows in the cold files of the months since `since`, counted in the files themselves
    (COPY text: one line per row, a newline inside a value is written as \\n), not taken
    from the ledger's own row_count; each file's count must also be the ledger's."""
    rows = psql(host, "SELECT json_build_object('path', cold_path, 'rows', row_count, 'supplements', "
                      "(SELECT coalesce(json_agg(s->>'file'), '[]') FROM jsonb_array_elements(cold_supplements) s)) "
                      f"FROM hub_archived_partitions WHERE parent_table = '{TABLE}' AND state = 'cold' "
                      f"AND month >= '{since}' ORDER BY month")
    total = 0
    for line in rows.splitlines():
        entry = json.loads(line)
        # The month's file and its supplements (late rows), in the month's directory.
        files = [entry["path"]] + [os.path.join(os.path.dirname(entry["path"]), f) for f in entry["supplements"]]
        counted = host.run(f"zstd -dcq {' '.join(files)} | wc -l")
        assert counted.rc == 0, counted.stderr
        assert int(counted.stdout) == int(entry["rows"]), (files, counted.stdout, entry["rows"])
        total += int(counted.stdout)
    return total


def stats_of(host, day: datetime.date) -> dict:
    row = psql(host, "SELECT row_to_json(s) FROM (SELECT total_allocations, completed_count, expired_count, "
                     "avg_execution_time_ms, unique_clients, unique_keywords FROM v1_hub_daily_stats "
                     f"WHERE stat_date = '{day}') s")
    return json.loads(row) if row else {}


def wait_for(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def hold_lock(host, relation: str, mode: str):
    """A session that holds `mode` on relation until released (or 5 minutes)."""
    host.run(
        f"PGAPPNAME={BLOCKER} nohup sudo -u postgres --preserve-env=PGAPPNAME psql -XAtq -d hub "
        f"-c \"LOCK TABLE {relation} IN {mode} MODE; SELECT pg_sleep(300)\" >/dev/null 2>&1 &"
    )
    wait_for(lambda: psql(host, f"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                f"WHERE a.application_name = '{BLOCKER}' AND l.granted "
                                f"AND l.relation = '{relation}'::regclass") == "1", "the blocking lock")


def release_lock(host):
    psql(host, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{BLOCKER}'")


def hubctl_waiting(host, job: str) -> str:
    """The pid of hubctl's backend while it waits for a lock, or ''."""
    return psql(host, "SELECT pid FROM pg_stat_activity WHERE application_name = 'hubctl-" + job + "' "
                      "AND wait_event_type = 'Lock'")


def start_in_background(host, args: str, log: str):
    host.run(f"rm -f {log}; nohup {HUBCTL} --config {SLOW_CONFIG} {args} > {log} 2>&1 &")


@pytest.fixture(scope="module")
def walk(host):
    """Set up the slow configuration (lock_timeout 60s) and the first partitions; yield the
    running tally of inserted walk rows."""
    host.run(f"sed 's/^lock_timeout = .*/lock_timeout = 60s/' /etc/hub/hubctl.conf > {SLOW_CONFIG} "
             f"&& chown root:hubmaint {SLOW_CONFIG} && chmod 0640 {SLOW_CONFIG}")
    assert host.file(SLOW_CONFIG).contains("^lock_timeout = 60s$")
    # Two years ahead nothing exists yet: the partition job makes the months around START.
    hubctl(host, f"partitions --today {DAYS[0]}")
    tally = {"inserted": 0, "extra": 0}
    yield tally
    release_lock(host)
    host.run(f"rm -f {SLOW_CONFIG}")


def step(host, walk, k: int) -> datetime.date:
    """Insert the rows since the previous step and run the daily job on day k."""
    today = DAYS[k]
    first = START if k == 0 else DAYS[k - 1]
    walk["inserted"] += insert_days(host, first, today)
    return today


def check_invariants(host, walk, today: datetime.date):
    s = state(host)
    live = sorted(datetime.date.fromisoformat(m) for m in s["live"])
    archive = sorted(datetime.date.fromisoformat(m) for m in s["archive"])
    current = today.replace(day=1)
    # Partitions: the current month and four ahead are live.
    for n in range(5):
        assert add_months(current, n) in live, (today, add_months(current, n), live)
    # Archive: no live month whose end is 90 days past; every such walk month is archived or cold.
    cutoff = today - datetime.timedelta(days=ARCHIVE_AFTER)
    assert [m for m in live if add_months(m, 1) <= cutoff] == [], (today, live)
    for m in (add_months(START, n) for n in range(STEPS)):
        if add_months(m, 1) <= cutoff:
            entry = s["ledger"].get(m.isoformat())
            assert entry is not None and entry["state"] in ("archived", "cold"), (today, m, entry)
            if entry["state"] == "archived":
                assert m in archive, (today, m)
    # Every walk row is somewhere exactly once.
    total = s["walk_live"] + s["walk_archive"] + cold_rows(host, START)
    assert total == walk["inserted"] + walk["extra"], (today, s)
    assert s["walk_keys"] == s["walk_live"] + s["walk_archive"], "duplicate rows"
    assert s["default_rows"] == 0
    return s


def test_fifteen_months_of_daily_runs(host, walk):
    interrupted_at, loaded_at, late_at, migrated_at = 5, 9, 7, STEPS - 2
    before_migration = None
    for k in range(STEPS):
        today = step(host, walk, k)
        if k == interrupted_at:
            interrupt_and_resume(host, walk, today)
        elif k == loaded_at:
            archive_under_load(host, walk, today)
        elif k == late_at:
            late_rows_follow_their_month(host, walk, today)
        elif k == migrated_at + 1:
            late_row_in_the_old_shape(host, walk, before_migration)
        result = hubctl(host, f"daily --today {today}")
        assert "step=stats" in result.stdout
        s = check_invariants(host, walk, today)
        yesterday = today - datetime.timedelta(days=1)
        assert stats_of(host, yesterday) == expected_day(), yesterday
        if k == migrated_at:
            before_migration = add_a_column(host, s)
    the_walk_went_on_after_the_migration(host, before_migration)
    # On the last step the first two walk months are over 365 days old: they are in cold files.
    for month in (START, add_months(START, 1)):
        entry = walk_ledger(host, month)
        assert entry["state"] == "cold" and entry["cold_path"], entry
        assert host.file(entry["cold_path"]).exists
    # Its stats stay as they were: a rerun of the rollup for a cold day refuses, not zeroes.
    day = DAYS[0] - datetime.timedelta(days=1)       # rolled up by the first step
    refused = hubctl(host, f"stats --today {DAYS[-1]} --date {day}", expect=1)
    assert "cold file" in refused.stdout
    assert stats_of(host, day) == expected_day()


# The migration the schema change test applies: a column added to the live table and, as 0002
# requires, to its archive twin, in one transaction as the owner role (as migration.yml runs a
# migration file; it is not recorded in hub_schema_migrations, so later converges of this
# scenario see the bundle's own list).
NEW_COLUMN = "walk_priority"
MIGRATION = [
    "BEGIN",
    "SET LOCAL lock_timeout = '30s'",
    "SET LOCAL ROLE hub_owner",
    f"ALTER TABLE {TABLE} ADD COLUMN {NEW_COLUMN} smallint",
    f"ALTER TABLE {TABLE}_archive ADD COLUMN {NEW_COLUMN} smallint",
    "COMMIT",
]


def ledger_columns(host, month: datetime.date) -> list:
    return json.loads(psql(host, "SELECT to_json(checksum_columns) FROM hub_archived_partitions "
                                 f"WHERE parent_table = '{TABLE}' AND month = '{month}'"))


def add_a_column(host, s: dict) -> dict:
    """Apply the migration while the walk has live, archived and cold months; return the
    ledger's states just before it."""
    states = {datetime.date.fromisoformat(m): v["state"] for m, v in s["ledger"].items()
              if datetime.date.fromisoformat(m) >= START}
    assert {"archived", "cold"} <= set(states.values()), states
    assert s["live"], "no live month"
    old = ledger_columns(host, START)
    assert old and NEW_COLUMN not in old
    psql(host, MIGRATION)
    assert NEW_COLUMN in psql(host, f"SELECT string_agg(attname, ',') FROM pg_attribute WHERE attrelid = "
                                    f"'{TABLE}_archive'::regclass AND attnum > 0 AND NOT attisdropped")
    return {"states": states, "columns": old}


def late_row_in_the_old_shape(host, walk, before):
    """A late row, with the new column set, for the oldest month archived before the migration:
    the next run moves it into the archive, then exports that month to its cold file."""
    month = min(m for m, state in before["states"].items() if state == "archived")
    landed = psql(host, ["SET ROLE hub_app",
                         f"INSERT INTO {TABLE} (work_date, client_id, keyword, status, {NEW_COLUMN}) "
                         f"VALUES ('{month + datetime.timedelta(days=3)}', 'walk-late2', 'walk-k', 'expired', 7) "
                         "RETURNING tableoid::regclass"])
    assert landed.splitlines()[-1] == f"{TABLE}_default"
    before["late"] = (month, walk_ledger(host, month)["row_count"])
    walk["extra"] += 1
    # And one for the oldest month already in a cold file: it goes to a supplement file.
    cold_month = min(m for m, state in before["states"].items() if state == "cold")
    landed = psql(host, ["SET ROLE hub_app",
                         f"INSERT INTO {TABLE} (work_date, client_id, keyword, status, {NEW_COLUMN}) "
                         f"VALUES ('{cold_month + datetime.timedelta(days=5)}', 'walk-late3', 'walk-k', 'expired', 9) "
                         "RETURNING tableoid::regclass"])
    assert landed.splitlines()[-1] == f"{TABLE}_default"
    before["cold_late"] = (cold_month, walk_ledger(host, cold_month))
    walk["extra"] += 1


def recount(host, month: datetime.date, columns: list, relation: str) -> tuple:
    """Count and checksum of a walk month, hashed over `columns` as hubctl does."""
    row = "ROW(" + ", ".join(f"t.{c}" for c in columns) + ")"
    out = psql(host, f"SELECT count(*) || ' ' || coalesce(sum(('x' || substr(md5({row}::text), 1, 15))"
                     f"::bit(60)::bigint), 0) FROM {relation} t WHERE work_date >= '{month}' "
                     f"AND work_date < '{add_months(month, 1)}'")
    count, checksum = out.split()
    return int(count), checksum


def the_walk_went_on_after_the_migration(host, before):
    """The step after the migration ran whole (the daily job exits 0 above); here its effects."""
    old = before["columns"]
    after = {datetime.date.fromisoformat(m): v["state"] for m, v in state(host)["ledger"].items()
             if datetime.date.fromisoformat(m) >= START}
    went_cold = [m for m, st in after.items() if st == "cold" and before["states"].get(m) == "archived"]
    newly_archived = [m for m, st in after.items() if st == "archived" and m not in before["states"]]
    assert went_cold and newly_archived, (before["states"], after)
    # An old-shape month went cold: its file carries the new column, its checksum the old ones.
    for m in went_cold:
        assert ledger_columns(host, m) == old
        manifest = json.loads(host.file(walk_ledger(host, m)["cold_path"].replace(".copy.zst", ".manifest.json"))
                              .content_string)
        assert [c["name"] for c in manifest["columns"]] == old + [NEW_COLUMN]
        assert manifest["checksum_columns"] == old
    # A month archived after the migration is counted over the new shape.
    for m in newly_archived:
        assert ledger_columns(host, m) == old + [NEW_COLUMN]
    # The late row joined its old-shape month before it went cold; every archived month adds up.
    late_month, count = before["late"]
    assert late_month in went_cold
    assert walk_ledger(host, late_month)["row_count"] == count + 1
    # The late row of a cold month left the default partition (the daily job above exited 0,
    # with nothing to report) for a supplement file beside the month's, counted in the ledger.
    cold_month, was = before["cold_late"]
    now = walk_ledger(host, cold_month)
    assert now["row_count"] == was["row_count"] + 1 and now["cold_path"] == was["cold_path"]
    supplements = json.loads(psql(host, "SELECT cold_supplements FROM hub_archived_partitions "
                                        f"WHERE parent_table = '{TABLE}' AND month = '{cold_month}'"))
    assert [s["row_count"] for s in supplements] == [1], supplements
    assert supplements[0]["offsite_verified_at"], supplements
    supplement = os.path.join(os.path.dirname(now["cold_path"]), supplements[0]["file"])
    assert host.run(f"sha256sum {supplement}").stdout.split()[0] == supplements[0]["sha256"]
    assert "walk-late3" in host.run(f"zstd -dcq {supplement}").stdout
    for m, st in after.items():
        if st == "archived":
            entry = walk_ledger(host, m)
            assert recount(host, m, ledger_columns(host, m), f"{TABLE}_archive") == \
                (entry["row_count"], str(entry["checksum"])), m
    # Both kinds of cold file restore with the ledger's count and checksum: one exported before
    # the migration (no new column in it), one after.
    # The second one's file and manifest are gone from the hub: the restore takes the off-site
    # copies, checks them against the ledger and puts them back.
    for m in (min(m for m, st in before["states"].items() if st == "cold"), went_cold[0]):
        label = f"{m:%Y-%m}"
        restored = f"hub_restored.{TABLE}_p{m:%Y_%m}"
        path = walk_ledger(host, m)["cold_path"]
        if m == went_cold[0]:
            host.run(f"rm {path} {path.replace('.copy.zst', '.manifest.json')}")
        result = host.run(f"{HUBCTL} cold restore {label}")
        assert result.rc == 0, result.stdout + result.stderr
        if m == went_cold[0]:
            assert "from_offsite=" in result.stdout and path.rsplit("/", 1)[1] in result.stdout
            assert host.file(path).sha256sum == cold_sha256(host, m)
            assert host.file(path.replace(".copy.zst", ".manifest.json")).exists
        entry = walk_ledger(host, m)
        assert recount(host, m, ledger_columns(host, m), restored) == (entry["row_count"], str(entry["checksum"]))
        if m == late_month:
            assert psql(host, f"SELECT {NEW_COLUMN} FROM {restored} WHERE client_id = 'walk-late2'") == "7"
        if m == cold_month:
            assert psql(host, f"SELECT {NEW_COLUMN} FROM {restored} WHERE client_id = 'walk-late3'") == "9"
        psql(host, f"DROP TABLE {restored}")


def cold_sha256(host, month: datetime.date) -> str:
    return psql(host, f"SELECT cold_sha256 FROM hub_archived_partitions WHERE parent_table = '{TABLE}' AND month = '{month}'")


def walk_ledger(host, month: datetime.date) -> dict:
    return json.loads(psql(host, "SELECT row_to_json(l) FROM (SELECT row_count, checksum, state, cold_path "
                                 f"FROM hub_archived_partitions WHERE parent_table = '{TABLE}' AND month = '{month}') l"))


def due_month(host, today: datetime.date) -> datetime.date:
    s = state(host)
    cutoff = today - datetime.timedelta(days=ARCHIVE_AFTER)
    due = sorted(datetime.date.fromisoformat(m) for m in s["live"]
                 if add_months(datetime.date.fromisoformat(m), 1) <= cutoff)
    assert due, f"no month due for the archive on {today}"
    return due[0]


def interrupt_and_resume(host, walk, today):
    """Kill -9 hubctl, then terminate its backend, while the move waits for its lock; a
    second job meanwhile is refused as busy. Nothing is lost; the next run completes."""
    month = due_month(host, today)
    before = state(host)
    runs_before = int(psql(host, "SELECT count(*) FROM hub_job_runs WHERE outcome = 'busy'"))

    # 1. The process is killed while its backend waits at ATTACH (after DETACH, same transaction).
    hold_lock(host, f"{TABLE}_archive", "SHARE UPDATE EXCLUSIVE")
    start_in_background(host, f"--today {today} archive", "/var/tmp/archive-killed.log")
    wait_for(lambda: hubctl_waiting(host, "archive") != "", "hubctl waiting for its lock")

    # Meanwhile a second job is refused at once, visibly, and changes nothing.
    busy_alerts = alerts(host).count("hubctl daily: busy")
    busy = hubctl(host, f"daily --today {today}", expect=75)
    assert "outcome=busy" in busy.stdout
    assert int(psql(host, "SELECT count(*) FROM hub_job_runs WHERE outcome = 'busy'")) == runs_before + 1
    assert alerts(host).count("hubctl daily: busy") == busy_alerts + 1

    host.run(f"pkill -KILL -f -- {SLOW_RUNS}")
    release_lock(host)
    # The orphaned backend gets its lock, finds its client gone, and rolls back.
    wait_for(lambda: psql(host, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'hubctl-%'") == "0",
             "the killed job's backend to end")
    after = state(host)
    assert month.isoformat() in after["live"], "the interrupted move was not rolled back"
    assert (after["walk_live"], after["walk_archive"]) == (before["walk_live"], before["walk_archive"])

    # 2. The backend is terminated while it waits: the job fails, records and alerts it. Its
    # start closes the killed run's record as failed and alerts that too.
    stale_alerts = alerts(host).count("ended without closing their record")
    hold_lock(host, f"{TABLE}_archive", "SHARE UPDATE EXCLUSIVE")
    start_in_background(host, f"--today {today} archive", "/var/tmp/archive-terminated.log")
    wait_for(lambda: hubctl_waiting(host, "archive") != "", "hubctl waiting for its lock")
    psql(host, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE application_name = 'hubctl-archive' AND wait_event_type = 'Lock'")
    wait_for(lambda: host.run(f"pgrep -f -- {SLOW_RUNS}").rc != 0, "the job to end")
    release_lock(host)
    log = host.file("/var/tmp/archive-terminated.log").content_string
    assert "outcome=failed" in log and "closed_stale=" in log, log
    assert alerts(host).count("ended without closing their record") == stale_alerts + 1
    after = state(host)
    assert month.isoformat() in after["live"]
    assert (after["walk_live"], after["walk_archive"]) == (before["walk_live"], before["walk_archive"])

    # A run without the blocker moves the month; the walk's checks then find every row once.
    hubctl(host, f"archive --today {today}")
    assert walk_ledger(host, month)["state"] == "archived"


def archive_under_load(host, walk, today):
    """The daily job moves a month while the application inserts without pause: every insert
    commits, none fails, and every row is there afterwards."""
    month = due_month(host, today)
    offset = (today - datetime.date.today()).days
    script = ("INSERT INTO v1_hub_work_allocations (work_date, status, client_id, keyword) "
              "VALUES (CURRENT_DATE + :offset, 'allocated', 'walk-bench', 'walk-k' || :client_id);\n")
    encoded = base64.b64encode(script.encode()).decode()
    host.run(f"echo {encoded} | base64 -d > /var/tmp/insert.sql && chmod 0644 /var/tmp/insert.sql")
    pgbench = host.run("ls /usr/lib/postgresql/*/bin/pgbench").stdout.split()[0]
    host.run(f"rm -f /var/tmp/pgbench.log; nohup sudo -u postgres {pgbench} -n -c 2 -j 2 -T 20 "
             f"-D offset={offset} -f /var/tmp/insert.sql hub > /var/tmp/pgbench.log 2>&1 &")
    wait_for(lambda: int(psql(host, f"SELECT count(*) FROM {TABLE} WHERE client_id = 'walk-bench' AND work_date >= '{START}'")) > 100,
             "pgbench to be inserting")
    result = hubctl(host, f"daily --today {today}")
    assert f"month={month:%Y-%m}" in result.stdout and "moved_to=" in result.stdout
    wait_for(lambda: host.run("pgrep -f /var/tmp/insert.sq[l]").rc != 0, "pgbench to finish", timeout=60)
    report = host.file("/var/tmp/pgbench.log").content_string
    processed = int(report.split("number of transactions actually processed: ")[1].split()[0])
    assert "number of failed transactions: 0 " in report, report
    inserted = int(psql(host, f"SELECT count(*) FROM {TABLE} WHERE client_id = 'walk-bench' AND work_date >= '{START}'"))
    assert inserted == processed > 0, report
    walk["extra"] += inserted
    assert walk_ledger(host, month)["state"] == "archived"


def late_rows_follow_their_month(host, walk, today):
    """A row for an archived month lands in the default partition and the next run moves it into
    the archive, adding it to the month's count."""
    archived = sorted(m for m, v in state(host)["ledger"].items()
                      if v["state"] == "archived" and datetime.date.fromisoformat(m) >= START)
    month = datetime.date.fromisoformat(archived[-1])
    count = walk_ledger(host, month)["row_count"]
    landed = psql(host, ["SET ROLE hub_app",
                         f"INSERT INTO {TABLE} (work_date, client_id, keyword, status) "
                         f"VALUES ('{month + datetime.timedelta(days=9)}', 'walk-late', 'walk-k', 'expired') "
                         "RETURNING tableoid::regclass"])
    assert landed.splitlines()[-1] == f"{TABLE}_default"
    walk["extra"] += 1
    result = hubctl(host, f"archive --today {today}")
    assert "step=late_rows" in result.stdout
    assert walk_ledger(host, month)["row_count"] == count + 1
    assert int(psql(host, f"SELECT count(*) FROM {TABLE}_archive WHERE client_id = 'walk-late' AND work_date >= '{START}'")) == 1


# --------------------------------------------------------------------------- the off-site copies

STORE_FILES = "/var/lib/hub-cold-store/files"
COLD_DIR = "/var/lib/hub/cold"


def cold_files(host) -> list:
    """(path, sha256) of every cold file the ledger lists: months' files and supplements."""
    rows = json.loads(psql(host, """
        SELECT coalesce(json_agg(json_build_object('path', cold_path, 'sha256', cold_sha256,
                                 'offsite', offsite_sha256, 'supplements', cold_supplements)), '[]')
        FROM hub_archived_partitions WHERE state = 'cold'"""))
    files = []
    for r in rows:
        assert r["offsite"] == r["sha256"], r           # verified off-site before the drop
        files.append((r["path"], r["sha256"]))
        for sup in r["supplements"]:
            assert sup["offsite_verified_at"], sup
            files.append((os.path.join(os.path.dirname(r["path"]), sup["file"]), sup["sha256"]))
    return files


def test_every_cold_file_has_a_verified_encrypted_copy_off_site(host, offsite):
    files = cold_files(host)
    assert len(files) >= 3, files
    for path, sha256 in files:
        rel = path[len(COLD_DIR) + 1:]
        checked = offsite.run(f"sudo -u hubcold /usr/local/bin/hub-cold-store check {rel} {sha256}")
        assert checked.rc == 0, (rel, checked.stderr)
        # Encrypted: not a zstd stream, no row text.
        assert offsite.run(f"zstd -t {STORE_FILES}/{rel}.{sha256}.enc").rc != 0
        assert offsite.run(f"grep -c walk- {STORE_FILES}/{rel}.{sha256}.enc").stdout.strip() == "0"


def test_the_hub_cannot_overwrite_or_remove_the_off_site_copies(host, offsite):
    """Root on the hub holds one credential for the store, the jobs' SSH key: it adds versions
    and reads them, and nothing else; every version stored stays as it was."""
    path, sha256 = cold_files(host)[0]
    rel = path[len(COLD_DIR) + 1:]

    def stored():
        listing = offsite.run(f"cd {STORE_FILES} && find . -type f | sort | xargs sha256sum").stdout
        return dict(reversed(line.split()) for line in listing.splitlines())

    before = stored()
    assert f"./{rel}.{sha256}.enc" in before, before
    ssh = ("sudo -u hubmaint ssh -i /var/lib/hub/.ssh/cold_offsite -o IdentitiesOnly=yes -o BatchMode=yes "
           f"-o UserKnownHostsFile=/var/lib/hub/.ssh/known_hosts hubcold@{offsite.backend.get_hostname()}")
    for request in (f"rm -f files/{rel}.{sha256}.enc", "sh -c id", f"put ../{rel} {'0' * 64}",
                    "find / -delete", f"get {rel} {sha256} ; rm -rf files"):
        result = host.run(f"{ssh} {request!r} </dev/null")
        assert result.rc == 2 and "refused" in result.stderr, (request, result.rc, result.stderr)
    # Other bytes under the month's name: a version of its own, beside the ledger's.
    other = "not the month's rows"
    result = host.run(f"printf %s {other!r} | {ssh} put {rel} $(printf %s {other!r} | sha256sum | cut -c1-64)")
    assert result.rc == 0 and result.stdout.startswith("stored "), result.stdout + result.stderr
    # The version the ledger names still reads back as the hub's file.
    got = host.run(f"{ssh} get {rel} {sha256} </dev/null | sha256sum")
    assert got.stdout.split()[0] == sha256 == host.file(path).sha256sum
    after = stored()
    assert {name: digest for name, digest in after.items() if name in before} == before
    assert len(after) == len(before) + 1
