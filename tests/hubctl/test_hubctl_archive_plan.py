"""Which months leave the live tables, for a given today."""

import datetime as dt

import pytest

from hubctl.archive import cutoff, months_to_archive

D = dt.date


def test_a_month_leaves_once_its_whole_range_is_older_than_the_limit():
    live = [D(2026, 7, 1), D(2026, 8, 1), D(2026, 9, 1), D(2026, 10, 1), D(2026, 11, 1)]
    # 2026-11-26 - 90 days = 2026-08-28: July has ended by then, August has not.
    assert cutoff(D(2026, 11, 26), 90) == D(2026, 8, 28)
    assert months_to_archive(live, D(2026, 11, 26), 90) == [D(2026, 7, 1)]
    # On 2026-10-30 (cutoff 2026-08-01) July's last day is exactly 90 days old: it leaves.
    assert months_to_archive(live, D(2026, 10, 30), 90) == [D(2026, 7, 1)]
    assert months_to_archive(live, D(2026, 10, 29), 90) == []


def test_several_old_months_leave_oldest_first():
    live = {D(2026, 3, 1): "p3", D(2026, 1, 1): "p1", D(2026, 2, 1): "p2", D(2026, 6, 1): "p6"}
    assert months_to_archive(live, D(2026, 7, 15), 90) == [D(2026, 1, 1), D(2026, 2, 1), D(2026, 3, 1)]


def test_nothing_leaves_with_a_longer_limit():
    assert months_to_archive([D(2026, 7, 1)], D(2026, 11, 26), 365) == []



def test_the_checksum_hashes_the_named_columns_of_the_alias_in_their_order():
    from psycopg2 import sql

    from hubctl.archive import checksum_expr
    text = repr(checksum_expr(sql, "moved", ["work_date", "allocation_key"]))
    first = text.index("Identifier('moved', 'work_date')")
    assert text.index("Identifier('moved', 'allocation_key')") > first
    assert "md5" in text and "bit(60)" in text
    with pytest.raises(ValueError):
        checksum_expr(sql, "t", [])


def test_missing_columns_names_what_a_relation_no_longer_has():
    from hubctl.archive import missing_columns
    assert missing_columns(["a", "b", "c"], ["c", "a", "d"]) == ["b"]
    assert missing_columns(["a"], ["a", "priority"]) == []
