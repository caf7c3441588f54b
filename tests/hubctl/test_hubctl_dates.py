import datetime as dt

import pytest

from hubctl import dates
from hubctl.dates import add_months, month_label, months, parse_date, resolve_stats_days

D = dt.date


@pytest.mark.parametrize("day, n, expected", [
    (D(2026, 11, 27), 0, D(2026, 11, 1)),
    (D(2026, 11, 27), 4, D(2027, 3, 1)),
    (D(2026, 11, 27), -3, D(2026, 8, 1)),
    (D(2026, 12, 31), 1, D(2027, 1, 1)),
    (D(2026, 1, 31), -1, D(2025, 12, 1)),
    (D(2026, 3, 15), -15, D(2024, 12, 1)),
    (D(2024, 2, 29), 12, D(2025, 2, 1)),
    (D(2026, 1, 1), 24, D(2028, 1, 1)),
])
def test_add_months(day, n, expected):
    assert add_months(day, n) == expected


def test_months_inclusive_and_empty():
    assert months(D(2026, 11, 5), D(2027, 2, 10)) == [
        D(2026, 11, 1), D(2026, 12, 1), D(2027, 1, 1), D(2027, 2, 1)]
    assert months(D(2026, 11, 30), D(2026, 11, 1)) == [D(2026, 11, 1)]
    assert months(D(2026, 12, 1), D(2026, 11, 30)) == []


def test_month_label():
    assert month_label(D(2027, 3, 17)) == "2027-03"


def test_days():
    assert dates.days(D(2026, 12, 30), D(2027, 1, 2)) == [
        D(2026, 12, 30), D(2026, 12, 31), D(2027, 1, 1), D(2027, 1, 2)]
    assert dates.days(D(2026, 1, 2), D(2026, 1, 1)) == []


def test_parse_date_ok():
    assert parse_date("2026-11-26") == D(2026, 11, 26)
    assert parse_date("2024-02-29") == D(2024, 2, 29)


@pytest.mark.parametrize("text, fragment", [
    ("2026-13-01", "month must be in 1..12"),
    ("2026-02-30", "day is out of range"),
    ("2025-02-29", "day is out of range"),
    ("20261101", "expected YYYY-MM-DD"),
    ("2026-1-01", "expected YYYY-MM-DD"),
    ("2026-11-01T00:00", "expected YYYY-MM-DD"),
    ("", "expected YYYY-MM-DD"),
    ("yesterday", "expected YYYY-MM-DD"),
])
def test_parse_date_rejects(text, fragment):
    with pytest.raises(ValueError) as exc:
        parse_date(text)
    assert "invalid date" in str(exc.value)
    assert fragment in str(exc.value)


TODAY = D(2026, 11, 26)


def test_stats_days_default_is_yesterday():
    assert resolve_stats_days(TODAY) == [D(2026, 11, 25)]
    assert resolve_stats_days(D(2027, 1, 1)) == [D(2026, 12, 31)]


def test_stats_days_single_and_range():
    assert resolve_stats_days(TODAY, date=D(2026, 11, 1)) == [D(2026, 11, 1)]
    got = resolve_stats_days(TODAY, date_from=D(2026, 10, 30), date_to=D(2026, 11, 2))
    assert got == [D(2026, 10, 30), D(2026, 10, 31), D(2026, 11, 1), D(2026, 11, 2)]
    # yesterday is the newest day that is over
    yesterday = TODAY - dt.timedelta(days=1)
    assert resolve_stats_days(TODAY, date=yesterday) == [yesterday]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"date_from": D(2026, 11, 1)}, "must be given together"),
    ({"date_to": D(2026, 11, 1)}, "must be given together"),
    ({"date": D(2026, 11, 1), "date_from": D(2026, 11, 1), "date_to": D(2026, 11, 2)},
     "not both"),
    ({"date_from": D(2026, 11, 10), "date_to": D(2026, 11, 1)}, "is after --to"),
    ({"date": D(2026, 11, 27)}, "not before today"),
    ({"date": D(2026, 11, 26)}, "not before today"),
    ({"date_from": D(2026, 11, 20), "date_to": D(2026, 12, 1)}, "not before today"),
    ({"date_from": D(2010, 1, 1), "date_to": D(2026, 1, 1)}, "longer than"),
])
def test_stats_days_rejects(kwargs, fragment):
    with pytest.raises(ValueError) as exc:
        resolve_stats_days(TODAY, **kwargs)
    assert fragment in str(exc.value)
