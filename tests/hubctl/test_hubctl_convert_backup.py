"""finalize drops the legacy table only after a copy of the database newer than the swap."""

import datetime as dt
import io
import os

import pytest

from hubctl import backup, convert, convert_backup as gate
from hubctl.jobs import Logger

SWAP = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))


def info(*stops, error=False):
    return {"name": "hub", "backup": [
        {"label": f"b{k}", "error": error, "timestamp": {"start": s - 60, "stop": s},
         "database": {"repo-key": 1}} for k, s in enumerate(stops)]}


def test_a_backup_that_finished_after_the_swap_counts_and_one_before_does_not():
    t = SWAP.timestamp()
    assert gate.backup_after(info(t - 10), SWAP) is None
    assert gate.backup_after(info(t - 10, t + 30, t + 5), SWAP)["label"] == "b1"
    assert gate.backup_after(info(t + 30, error=True), SWAP) is None     # a backup in error
    assert gate.backup_after({"name": "hub"}, SWAP) is None               # no backup at all


def test_the_swap_time_is_read_as_row_to_json_writes_it():
    assert gate.parse_time("2026-12-04T10:00:00.123456+09:00") == SWAP + dt.timedelta(microseconds=123456)
    with pytest.raises(ValueError):
        gate.parse_time("2026-12-04T10:00:00")


def _dump(tmp_path, head=b"PGDMP\x01\x0e", when=None):
    path = tmp_path / "hub.dump"
    path.write_bytes(head + b"\x00" * 100)
    stamp = (when or SWAP + dt.timedelta(minutes=5)).timestamp()
    os.utime(path, (stamp, stamp))
    return str(path)


def test_a_dump_written_after_the_swap_is_accepted(tmp_path):
    assert gate.dump_problem(_dump(tmp_path), SWAP) is None
    assert gate.dump_problem(_dump(tmp_path, head=b"--\n-- PostgreSQL database dump\n"), SWAP) is None


@pytest.mark.parametrize("kind, fragment", [
    ("before", "before the swap"),
    ("not a dump", "is not a pg_dump file"),
    ("missing", "No such file"),
    ("relative", "absolute path"),
    ("empty", "not a file with content"),
])
def test_a_dump_that_is_not_a_copy_after_the_swap_is_refused(tmp_path, kind, fragment):
    path = {
        "before": lambda: _dump(tmp_path, when=SWAP - dt.timedelta(minutes=1)),
        "not a dump": lambda: _dump(tmp_path, head=b"hello"),
        "missing": lambda: str(tmp_path / "gone.dump"),
        "relative": lambda: "hub.dump",
        "empty": lambda: (tmp_path / "e.dump").write_bytes(b"") or str(tmp_path / "e.dump"),
    }[kind]()
    assert fragment in gate.dump_problem(path, SWAP)


class _Cx:
    def __init__(self):
        self.out = io.StringIO()
        self.log = Logger("convert", self.out)


STATE = {"swapped_at": SWAP.isoformat()}


def test_finalize_is_refused_without_a_backup_and_says_how_to_go_on():
    cx = _Cx()
    with pytest.raises(convert.Refused) as refused:
        convert.backup_gate(cx, STATE, None, "hub", read_info=lambda stanza: info(SWAP.timestamp() - 3600))
    text = str(refused.value)
    assert "no backup of the database finished after the swap" in text
    assert "hubctl backup full" in text and "--dump" in text and "hub_convert_finalize_dump" in text


def test_finalize_is_refused_when_pgbackrest_cannot_be_asked():
    def absent(stanza):
        raise FileNotFoundError(2, "No such file or directory", "/usr/bin/sudo")
    with pytest.raises(convert.Refused, match="pgBackRest could not be asked"):
        convert.backup_gate(_Cx(), STATE, None, "hub", read_info=absent)

    def failing(stanza):
        raise backup.PgBackRestError("pgbackrest info: exit 1: sudo: a password is required")
    with pytest.raises(convert.Refused, match="a password is required"):
        convert.backup_gate(_Cx(), STATE, None, "hub", read_info=failing)


def test_finalize_goes_on_with_a_backup_after_the_swap_or_a_named_dump(tmp_path):
    cx = _Cx()
    convert.backup_gate(cx, STATE, None, "hub", read_info=lambda s: info(SWAP.timestamp() + 60))
    assert "step=backup_gate backup=b0 repo=1 outcome=ok" in cx.out.getvalue()
    cx = _Cx()
    path = _dump(tmp_path)
    convert.backup_gate(cx, STATE, path, "hub", read_info=lambda s: pytest.fail("not asked"))
    assert f"dump={path}" in cx.out.getvalue()
    with pytest.raises(convert.Refused, match="before the swap"):
        convert.backup_gate(_Cx(), STATE, _dump(tmp_path, when=SWAP - dt.timedelta(hours=1)), "hub")
