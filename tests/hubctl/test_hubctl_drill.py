"""hubctl's DR drill support: `hubctl marker` (no lock, no run record, exit 1 on failure) and
the backup manifest (live partitions' row counts, written before pgBackRest starts, never in the
way of the backup). Fake connections stand in for the database; the command line runs against
a dead port, as in test_hubctl_cli.py."""

import datetime as _dt
import io
from types import SimpleNamespace

import pytest

from hubctl import backup, cli, drill, jobs
from hubctl.jobs import JobLock
from hubctl_testutil import run_hubctl, write_config

DEAD_PORT = 1
WRITTEN = _dt.datetime(2026, 11, 27, 3, 40, tzinfo=_dt.timezone.utc)


# --------------------------------------------------------------------------- fakes

class FakeCursor:
    """Answers by the first matching fragment of the statement; records every statement."""

    def __init__(self, conn):
        self.conn = conn
        self.closed = False
        self._rows = []

    def execute(self, query, args=None):
        text = query if isinstance(query, str) else repr(query)
        self.conn.statements.append((text, args))
        if self.conn.fail_on and self.conn.fail_on in text:
            raise RuntimeError(f"boom on {self.conn.fail_on}")
        for fragment, rows in self.conn.answers:
            if fragment in text:
                self._rows = list(rows(args) if callable(rows) else rows)
                return
        self._rows = []

    def executemany(self, query, seq):
        for args in seq:
            self.conn.statements.append((query, args))
            self.conn.inserted.append(args)

    def fetchone(self):
        return self._rows[0] if self._rows else None

    def fetchall(self):
        return list(self._rows)

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FakeConn:
    def __init__(self, answers=(), fail_on=None):
        self.answers = list(answers)
        self.fail_on = fail_on
        self.statements, self.inserted = [], []
        self.closed = False
        self.commits = self.rollbacks = 0

    def cursor(self):
        return FakeCursor(self)

    def commit(self):
        self.commits += 1

    def rollback(self):
        self.rollbacks += 1

    def close(self):
        self.closed = True


def _partman_answers():
    """A hub with one live table of two months and a default partition."""
    bounds = [("v1_hub_work_allocations_p20261101", "FOR VALUES FROM ('2026-11-01') TO ('2026-12-01')"),
              ("v1_hub_work_allocations_p20261201", "FOR VALUES FROM ('2026-12-01') TO ('2027-01-01')"),
              ("v1_hub_work_allocations_default", "DEFAULT")]
    counts = iter([0, 120, 7])   # in name order: _default, _p20261101, _p20261201
    return [
        ("pg_extension", [("5.2.4", "partman")]),
        ("part_config", [("public.v1_hub_work_allocations", "created_at", 4, True)]),
        ("pg_inherits", bounds),
        ("to_regclass", [("public.v1_hub_work_allocations",)]),
        ("count(*)", lambda args: [(next(counts),)]),
        ("SELECT now()", [(WRITTEN,)]),
    ]


class FakeJob:
    """Just what write_manifest uses of a jobs.Job: conn, dry_run and step()."""

    def __init__(self, conn, dry_run=False):
        self.conn, self.dry_run = conn, dry_run
        self.name = "backup-full"
        self.log = jobs.Logger("backup-full", io.StringIO())
        self.steps = []

    step = jobs.Job.step
    _finish_step = jobs.Job._finish_step

    @property
    def _conn(self):
        return self.conn


# --------------------------------------------------------------------------- the manifest

def test_manifest_counts_every_live_partition_under_one_taken_at():
    conn = FakeConn(_partman_answers())
    job = FakeJob(conn)
    drill.write_manifest(job)
    assert conn.inserted == [
        (WRITTEN, "public.v1_hub_work_allocations_default", 0),
        (WRITTEN, "public.v1_hub_work_allocations_p20261101", 120),
        (WRITTEN, "public.v1_hub_work_allocations_p20261201", 7),
    ]
    (step,) = job.steps
    assert step.name == "manifest" and step.outcome == jobs.OK
    assert step.fields["live_rows"] == 127 and step.fields["partitions"] == 3
    assert step.rows is None          # the backup job's rows stay what it changed
    assert conn.commits == 1
    inserts = [s for s, _ in conn.statements if "INSERT" in s]
    assert inserts and all("public.hub_backup_manifests" in s for s in inserts)


def test_manifest_dry_run_counts_and_writes_nothing():
    conn = FakeConn(_partman_answers())
    job = FakeJob(conn, dry_run=True)
    drill.write_manifest(job)
    assert conn.inserted == []
    assert job.steps[0].outcome == jobs.DRY_RUN and job.steps[0].fields["live_rows"] == 127


def test_a_failing_manifest_is_a_failed_step_and_never_stops_the_backup():
    conn = FakeConn(_partman_answers(), fail_on="part_config")
    job = FakeJob(conn)
    drill.write_manifest(job)                       # does not raise
    (step,) = job.steps
    assert step.outcome == jobs.FAILED and "boom" in step.error
    assert conn.rollbacks == 1 and conn.inserted == []


def test_backup_writes_the_manifest_before_pgbackrest_starts(monkeypatch):
    order = []
    monkeypatch.setattr(drill, "write_manifest", lambda job: order.append("manifest"))

    def fake_step(job, name, argv, **fields):
        order.append(name)
        raise StopIteration  # stop after the first pgBackRest step
    monkeypatch.setattr(backup, "_step_pgbackrest", fake_step)
    for repo, kind in ((1, "full"), (1, "incr"), (2, "full")):
        order.clear()
        with pytest.raises(StopIteration):
            backup.backup(SimpleNamespace(dry_run=False), "hub", repo, kind)
        assert order == ["manifest", "backup"]


@pytest.mark.parametrize("kind", ["expire", "verify"])
def test_expire_and_verify_write_no_manifest(monkeypatch, kind):
    monkeypatch.setattr(drill, "write_manifest", lambda job: pytest.fail("manifest written"))
    monkeypatch.setattr(backup, "_step_pgbackrest", lambda *a, **k: None)
    monkeypatch.setattr(backup, "run_pgbackrest",
                        lambda argv: SimpleNamespace(returncode=0, stdout="status: ok\n", stderr=""))
    args = SimpleNamespace(backup_kind=kind, stanza="hub", repo=1)
    backup.body(args)(SimpleNamespace(dry_run=False, step=_null_step))


class _NullStep:
    outcome = None

    def set(self, **fields):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _null_step(name, **fields):
    return _NullStep()


def test_manifest_rows_are_schema_qualified_and_sorted():
    assert drill.manifest_rows({("public", "b"): 2, ("public", "a"): 1}) == [
        ("public.a", 1), ("public.b", 2)]


# --------------------------------------------------------------------------- hubctl marker

def _cfg(tmp_path):
    from hubctl.config import load_config
    return load_config(write_config(tmp_path, port=DEAD_PORT))


def test_marker_inserts_one_row_and_logs_it(tmp_path):
    conn = FakeConn([("hub_markers", [(42, WRITTEN)])])
    out = io.StringIO()
    rc = drill.marker_run(SimpleNamespace(dry_run=False), _cfg(tmp_path), None,
                          connect=lambda cfg, job: conn, stream=out)
    assert rc == jobs.EXIT_OK
    assert [s for s, _ in conn.statements] == [drill.MARKER_SQL]
    assert conn.commits == 1 and conn.closed
    line = out.getvalue()
    assert "job=marker step=marker id=42" in line and "outcome=ok" in line


def test_marker_failure_exits_1_with_the_error(tmp_path):
    conn = FakeConn(fail_on="hub_markers")
    out = io.StringIO()
    rc = drill.marker_run(SimpleNamespace(dry_run=False), _cfg(tmp_path), None,
                          connect=lambda cfg, job: conn, stream=out)
    assert rc == jobs.EXIT_FAILED
    assert "outcome=failed" in out.getvalue() and "boom" in out.getvalue()
    assert conn.rollbacks == 1 and conn.closed


def test_marker_is_a_read_only_command_not_a_job():
    cmd = cli.COMMANDS["marker"]
    assert cmd.run is drill.marker_run and cmd.body is None


def test_marker_runs_while_another_job_holds_the_lock(repo_root, tmp_path):
    """The daily jobs' lock never refuses a marker: it fails here only because the database is
    down (exit 1, not 75 busy), and takes no lock and writes no alert."""
    alert = tmp_path / "alert.txt"
    cfg = write_config(tmp_path, port=DEAD_PORT,
                       jobs=f"lock_dir = {tmp_path}/lock\nalert_command = cat > {alert}\n")
    lock = JobLock(str(tmp_path / "lock"))
    assert lock.acquire("daily")
    try:
        p = run_hubctl(repo_root, "--config", cfg, "marker")
    finally:
        lock.release()
    assert p.returncode == jobs.EXIT_FAILED, p
    assert "job=marker step=marker" in p.stdout and "outcome=failed" in p.stdout
    assert "busy" not in p.stdout
    assert not alert.exists()


def test_marker_dry_run_connects_to_nothing(repo_root, tmp_path):
    cfg = write_config(tmp_path, port=DEAD_PORT)
    p = run_hubctl(repo_root, "--config", cfg, "--dry-run", "marker")
    assert p.returncode == 0, p
    assert "outcome=dry-run" in p.stdout
