import datetime as dt

from hubctl.partitions import (classify_partitions, months_ahead, parse_bound, plan_months,
                               window)

D = dt.date


def month_set(first, last):
    from hubctl.dates import months
    return set(months(first, last))


def test_window_is_three_back_four_ahead():
    assert window(D(2026, 11, 27)) == (D(2026, 8, 1), D(2027, 3, 1))
    assert window(D(2027, 1, 1)) == (D(2026, 10, 1), D(2027, 5, 1))
    # a larger partman premake widens it, a smaller one never shrinks it below 4
    assert window(D(2026, 11, 27), premake=6) == (D(2026, 8, 1), D(2027, 5, 1))
    assert window(D(2026, 11, 27), premake=2) == (D(2026, 8, 1), D(2027, 3, 1))


def test_plan_nothing_missing_at_install():
    existing = month_set(D(2026, 7, 1), D(2027, 3, 1))   # what 0004 made on 2026-11-27
    plan = plan_months(D(2026, 11, 27), 4, existing, set())
    assert plan.missing == [] and plan.archived == []
    assert plan.wanted[0] == D(2026, 8, 1) and plan.wanted[-1] == D(2027, 3, 1)


def test_plan_moved_today_creates_the_months_it_needs():
    existing = month_set(D(2026, 7, 1), D(2027, 3, 1))
    plan = plan_months(D(2027, 4, 10), 4, existing, set())
    assert plan.missing == [D(2027, 4, 1), D(2027, 5, 1), D(2027, 6, 1), D(2027, 7, 1),
                            D(2027, 8, 1)]


def test_plan_never_recreates_archived_months():
    # 2026-08 and 2026-09 left the live table (archived); a far jump wants them back
    existing = month_set(D(2026, 10, 1), D(2027, 3, 1))
    archived = {D(2026, 8, 1), D(2026, 9, 1)}
    plan = plan_months(D(2026, 11, 30), 4, existing, archived)
    assert plan.missing == []
    assert plan.archived == [D(2026, 8, 1), D(2026, 9, 1)]


def test_plan_fills_a_gap_in_the_window():
    existing = month_set(D(2026, 7, 1), D(2027, 3, 1)) - {D(2026, 12, 1)}
    plan = plan_months(D(2026, 11, 27), 4, existing, set())
    assert plan.missing == [D(2026, 12, 1)]


def test_months_ahead_counts_consecutive_months_after_the_current():
    existing = month_set(D(2026, 7, 1), D(2027, 3, 1))
    assert months_ahead(D(2026, 11, 27), existing) == 4
    assert months_ahead(D(2026, 12, 1), existing) == 3
    assert months_ahead(D(2027, 3, 31), existing) == 0
    assert months_ahead(D(2026, 11, 27), existing - {D(2027, 1, 1)}) == 1


def test_parse_bound():
    assert parse_bound("DEFAULT") == "default"
    assert parse_bound("FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')") == (
        D(2026, 7, 1), D(2026, 8, 1))
    # a timestamptz bound text (what partman passes) also parses to its date
    assert parse_bound("FOR VALUES FROM ('2026-07-01 00:00:00+09') TO ('2026-08-01 00:00:00+09')") \
        == (D(2026, 7, 1), D(2026, 8, 1))
    assert parse_bound("FOR VALUES IN (1, 2)") is None
    assert parse_bound("FOR VALUES FROM (MINVALUE) TO ('2026-08-01')") is None
    assert parse_bound(None) is None


def test_classify_partitions():
    parts = classify_partitions([
        ("t_p20260701", "FOR VALUES FROM ('2026-07-01') TO ('2026-08-01')"),
        ("t_p20260801", "FOR VALUES FROM ('2026-08-01') TO ('2026-09-01')"),
        ("t_default", "DEFAULT"),
        ("t_twomonths", "FOR VALUES FROM ('2026-09-01') TO ('2026-11-01')"),
        ("t_midmonth", "FOR VALUES FROM ('2026-11-15') TO ('2026-12-15')"),
    ])
    assert parts.default == "t_default"
    assert parts.months == {D(2026, 7, 1): "t_p20260701", D(2026, 8, 1): "t_p20260801"}
    assert sorted(parts.other) == ["t_midmonth", "t_twomonths"]
