"""The capacity report's arithmetic and its words (hubctl/capacity.py), from snapshot rows as
read_window returns them; the SQL runs against real PostgreSQL in the site scenario
(molecule/site/tests/test_2_maintenance.py)."""

import datetime as dt
import json

import pytest

from hubctl import capacity
from hubctl.config import ConfigError, load_config
from hubctl.metrics import Metrics, render

from hubctl_testutil import run_hubctl, write_config

GB = 10 ** 9
TODAY = dt.date(2026, 12, 4)
TABLE = "v1_hub_work_allocations"


def history(days, *, live_per_day=0.05 * GB, used0=100 * GB, used_per_day=1 * GB,
            size=500 * GB, newest=TODAY):
    """Snapshot rows of `days` days ending at newest: one table growing linearly, its archive
    flat, pg_wal, and the data volume."""
    rows = []
    for i in range(days):
        day = newest - dt.timedelta(days=days - 1 - i)
        rows += [(day, TABLE, "live", round(2 * GB + i * live_per_day), round(0.5 * GB), None),
                 (day, TABLE, "archive", 3 * GB, GB, None),
                 (day, TABLE, "cold", 0, None, None),
                 (day, "pg_wal", "wal", GB, None, None),
                 (day, "data", "volume", round(used0 + i * used_per_day), None, size)]
    return sorted(rows, key=lambda r: (r[0], r[1], r[2]))


def test_fit_recovers_a_straight_line():
    days = [TODAY - dt.timedelta(days=n) for n in range(30)]
    f = capacity.fit([(d, 1000 + 7 * d.toordinal()) for d in days])
    assert f.slope == pytest.approx(7)
    assert f.at(TODAY) == pytest.approx(1000 + 7 * TODAY.toordinal())


def test_fit_needs_two_different_days():
    assert capacity.fit([]) is None
    assert capacity.fit([(TODAY, 5)]) is None
    assert capacity.fit([(TODAY, 5), (TODAY, 9)]) is None


def test_no_snapshot_at_all_says_so_and_divides_by_nothing():
    report = capacity.build([], TODAY)
    assert report["enough_history"] is False
    assert "no size snapshot yet" in report["message"]
    assert "no size snapshot yet" in capacity.to_text(report)
    json.loads(capacity.to_json(report))


def test_first_day_gives_sizes_and_not_enough_history():
    report = capacity.build(history(1), TODAY)
    assert report["enough_history"] is False
    assert report["message"].startswith("not enough history yet: 1 day(s)")
    live = report["totals"]["live"]
    assert live["bytes"] == 2 * GB and live["growth_bytes_per_day"] is None
    data = report["volumes"]["data"]
    assert data["used_percent"] == 20.0 and "reaches" not in data
    assert report["seed_comparison"]["growth_gb_per_year"] is None
    text = capacity.to_text(report)
    assert "not enough history yet" in text and "projected dates: not enough history yet" in text


def test_29_days_are_not_enough_and_30_are():
    assert capacity.build(history(29), TODAY)["enough_history"] is False
    assert capacity.build(history(30), TODAY)["enough_history"] is True


def test_a_month_of_growth_projects_the_70_and_100_percent_dates():
    # 100 GB used on the first day, +1 GB a day: 350 GB (70 % of 500 GB) 250 days after the
    # first day, 500 GB after 400 days.
    report = capacity.build(history(31), TODAY)
    first = TODAY - dt.timedelta(days=30)
    data = report["volumes"]["data"]
    assert data["growth_bytes_per_day"] == GB
    assert data["reaches"] == {"70": (first + dt.timedelta(days=250)).isoformat(),
                               "100": (first + dt.timedelta(days=400)).isoformat()}
    live = report["totals"]["live"]
    assert live["growth_bytes_per_30_days"] == round(30 * 0.05 * GB)
    assert report["totals"]["indexes"]["bytes"] == round(1.5 * GB)
    assert report["totals"]["archive"]["growth_bytes_per_day"] == 0
    seed = report["seed_comparison"]
    assert seed["growth_gb_per_year"] == pytest.approx(365 * 0.05, abs=0.01)
    assert seed["year5_gb"] == pytest.approx(2 + 1.5 + 3 + 5 * 365 * 0.05, abs=0.02)
    assert seed["disk_gb"] == 500
    text = capacity.to_text(report)
    assert f"reaches 70 %: {data['reaches']['70']}" in text
    assert "seed 25 GB, measured 18.25 GB" in text


def test_a_volume_already_past_the_threshold_reaches_it_today():
    report = capacity.build(history(30, used0=360 * GB, used_per_day=0.1 * GB), TODAY)
    assert report["volumes"]["data"]["reaches"]["70"] == TODAY.isoformat()


def test_a_flat_or_shrinking_volume_never_reaches_a_threshold():
    for per_day in (0, -GB):
        report = capacity.build(history(30, used0=200 * GB, used_per_day=per_day), TODAY)
        assert report["volumes"]["data"]["reaches"] == {"70": None, "100": None}
        assert "not within 100 years" in capacity.to_text(report)


def test_a_stale_history_is_pointed_out():
    report = capacity.build(history(30, newest=TODAY - dt.timedelta(days=5)), TODAY)
    assert "5 days ago" in report["stale"]
    assert capacity.to_text(report).count("WARNING") == 1


def test_metrics_carry_the_growth_and_the_projected_dates():
    class Cur:
        def execute(self, sql, params):
            self.params = params

        def fetchall(self):
            return history(31)

    m = Metrics()
    capacity.collect_metrics(m, Cur(), TODAY)
    text = render(list(m.families.values()))
    assert "hub_capacity_enough_history 1" in text
    assert 'hub_capacity_growth_bytes_per_day{scope="volume_data"} 1000000000' in text
    day70 = dt.datetime.combine(TODAY - dt.timedelta(days=30) + dt.timedelta(days=250),
                                dt.time(), dt.timezone.utc)
    assert (f'hub_capacity_volume_reaches_timestamp_seconds{{percent="70",volume="data"}} '
            f'{int(day70.timestamp())}') in text


def test_capacity_volumes_in_the_config(tmp_path):
    path = write_config(tmp_path)
    assert load_config(path).capacity.volumes == (("data", "/var/lib/postgresql"),
                                                  ("repo1", "/var/lib/pgbackrest"))
    with open(path, "a") as fh:
        fh.write("[capacity]\nvolumes = data=/srv/pg/ repo1=/srv/backup\n")
    assert load_config(path).capacity.volumes == (("data", "/srv/pg"), ("repo1", "/srv/backup"))


@pytest.mark.parametrize("value, expected", [
    ("data=relative", "not NAME=/absolute/path"),
    ("data", "not NAME=/absolute/path"),
    ("da-ta=/x", "not NAME=/absolute/path"),
    ("data=/a data=/b", "data is given twice"),
])
def test_bad_capacity_volumes_are_refused(tmp_path, value, expected):
    path = write_config(tmp_path)
    with open(path, "a") as fh:
        fh.write(f"[capacity]\nvolumes = {value}\n")
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_days_shorter_than_two_weeks_are_refused_before_connecting(repo_root, tmp_path):
    p = run_hubctl(repo_root, "--config", write_config(tmp_path), "capacity", "--days", "7")
    assert p.returncode == 2
    assert "--days must be at least 14" in p.stderr


def test_a_series_younger_than_the_window_has_no_trend_of_its_own():
    rows = history(30) + [(TODAY - dt.timedelta(days=1), "new_table", "live", GB, 0, None),
                          (TODAY, "new_table", "live", 2 * GB, 0, None)]
    report = capacity.build(sorted(rows, key=lambda r: (r[0], r[1], r[2])), TODAY)
    new = [t for t in report["tables"] if t["table"] == "new_table"][0]
    assert new["bytes"] == 2 * GB and new["growth_bytes_per_day"] is None
    # The total it joined counts the days with all of today's tables: until new_table has a
    # month of its own, the total has no trend rather than its 2 GB counted as a day's growth.
    assert report["totals"]["live"]["growth_bytes_per_day"] is None
    assert report["totals"]["live"]["bytes"] == round(2 * GB + 29 * 0.05 * GB) + 2 * GB
    assert report["totals"]["archive"]["growth_bytes_per_day"] == 0


def test_two_snapshots_a_month_apart_are_no_trend():
    # The daily job broken between them: the span is there, the snapshots are not.
    rows = [r for r in history(30) if r[0] in (TODAY - dt.timedelta(days=29), TODAY)]
    report = capacity.build(rows, TODAY)
    assert report["enough_history"] is False
    assert "2 snapshot(s) in the last 30 days, 20 needed" in report["message"]
    assert "reaches" not in report["volumes"]["data"]
    assert report["totals"]["live"]["growth_bytes_per_day"] is None
    # Twenty of the thirty days are enough.
    kept = {TODAY - dt.timedelta(days=n) for n in range(0, 30, 3)} | {TODAY - dt.timedelta(days=n) for n in range(2, 30, 3)}
    assert len(kept) == 20
    assert capacity.build([r for r in history(30) if r[0] in kept], TODAY)["enough_history"] is True
