"""A busy table: the partition step fails on lock_timeout and is tried again, not queued."""

import datetime as dt
import io

import pytest

from hubctl import partitions
from hubctl.jobs import Job, Logger
from hubctl.partitions import LiveTable


class LockNotAvailable(Exception):
    pgcode = "55P03"


class OtherError(Exception):
    pgcode = "42501"


def make_job():
    return Job("partitions", cfg=None, today=dt.date(2026, 11, 26), dry_run=False,
               log=Logger("partitions", io.StringIO()), connect=lambda *a, **k: None)


TABLE = LiveTable("public.v1_hub_work_allocations", "public", "v1_hub_work_allocations", "work_date", 4)


def test_lock_timeout_is_retried_until_the_table_is_free(monkeypatch):
    calls = []

    def once(job, st, *args):
        calls.append(len(calls))
        if len(calls) < 3:
            raise LockNotAvailable("canceling statement due to lock timeout")

    monkeypatch.setattr(partitions, "_ensure_table_once", once)
    job = make_job()
    partitions.ensure_table(job, TABLE, 5, "partman", "5.2.4", pauses=(0, 0, 0))
    assert len(calls) == 3
    assert job.steps[-1].outcome == "ok"
    assert job.steps[-1].fields["lock_retries"] == 2


def test_a_table_that_stays_busy_fails_the_step_after_the_last_try(monkeypatch):
    calls = []

    def once(job, st, *args):
        calls.append(1)
        raise LockNotAvailable("canceling statement due to lock timeout")

    monkeypatch.setattr(partitions, "_ensure_table_once", once)
    job = make_job()
    with pytest.raises(LockNotAvailable):
        partitions.ensure_table(job, TABLE, 5, "partman", "5.2.4", pauses=(0, 0))
    assert len(calls) == 3
    assert job.steps[-1].outcome == "failed"


def test_other_errors_are_not_retried(monkeypatch):
    calls = []

    def once(job, st, *args):
        calls.append(1)
        raise OtherError("permission denied")

    monkeypatch.setattr(partitions, "_ensure_table_once", once)
    with pytest.raises(OtherError):
        partitions.ensure_table(make_job(), TABLE, 5, "partman", "5.2.4", pauses=(0, 0))
    assert len(calls) == 1
