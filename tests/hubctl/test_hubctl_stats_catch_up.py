"""The daily job's stats step: yesterday, and the days missed before it, bounded."""

import datetime as dt

from hubctl.stats import CATCH_UP_DAYS, catch_up_days

TODAY = dt.date(2026, 12, 4)
Y = TODAY - dt.timedelta(days=1)


def days_before(n):
    return Y - dt.timedelta(days=n)


def test_nothing_missed_is_yesterday_alone():
    rolled = {days_before(k) for k in range(1, CATCH_UP_DAYS + 1)}
    assert catch_up_days(TODAY, rolled, days_before(400)) == [Y]


def test_a_day_refused_as_busy_and_a_host_down_for_two_days_are_filled_in_oldest_first():
    rolled = {days_before(k) for k in range(1, CATCH_UP_DAYS + 1)} - {days_before(1), days_before(5), days_before(6)}
    assert catch_up_days(TODAY, rolled, days_before(400)) == [
        days_before(6), days_before(5), days_before(1), Y]


def test_the_look_back_is_bounded():
    days = catch_up_days(TODAY, set(), days_before(400))
    assert len(days) == CATCH_UP_DAYS + 1
    assert days[0] == days_before(CATCH_UP_DAYS) and days[-1] == Y


def test_a_new_server_does_not_fill_the_days_before_it_existed():
    assert catch_up_days(TODAY, set(), None) == [Y]
    # first rolled up three days ago, nothing since: those days only
    assert catch_up_days(TODAY, {days_before(3)}, days_before(3)) == [days_before(2), days_before(1), Y]


def test_yesterday_is_always_rolled_up_again():
    assert catch_up_days(TODAY, {Y}, days_before(10))[-1] == Y
