import datetime as dt
import json

from hubctl.status import to_json, to_text

TZ = dt.timezone(dt.timedelta(hours=9))


def sample(held=False):
    t = dt.datetime(2026, 11, 26, 3, 0, 1, 123456, tzinfo=TZ)
    return {
        "today": dt.date(2026, 11, 26), "partman": "5.2.4",
        "jobs": {
            "daily": {"id": 7, "started_at": t, "finished_at": t, "outcome": "busy",
                      "rows": None, "error": None, "attention": [],
                      "last_done": {"id": 6, "started_at": t, "finished_at": t,
                                    "outcome": "ok", "rows": 2}},
            "partitions": {"id": 9, "started_at": t, "finished_at": None, "outcome": "running",
                           "rows": None, "error": None, "attention": [], "last_done": None},
            "stats": None,
        },
        "tables": {"v1_hub_work_allocations": {
            "default_partition": "v1_hub_work_allocations_default", "default_rows": 3,
            "partitions": 9, "first_month": "2026-07", "last_month": "2027-03",
            "months_ahead": 4}},
        "stats": {"latest_date": dt.date(2026, 11, 25), "yesterday_done": True},
        "lock": {"dir": "/run/lock/hub", "held": held},
    }


def test_text():
    text = to_text(sample())
    assert "daily       #7 2026-11-26T03:00:01+09:00 .. 2026-11-26T03:00:01+09:00  outcome=busy rows=-" in text
    assert "last done: #6" in text and "outcome=ok rows=2" in text
    assert "stats       never run" in text
    assert "(stale:" in text
    assert "v1_hub_work_allocations  months_ahead=4 partitions=9 (2026-07..2027-03) default_rows=3" in text
    assert "stats: latest_date=2026-11-25 yesterday_done=yes" in text
    assert text.endswith("lock: free")
    # a running run while the lock is held is not called stale
    assert "(stale:" not in to_text(sample(held=True))


def test_json_round_trips():
    data = json.loads(to_json(sample()))
    assert data["today"] == "2026-11-26"
    assert data["jobs"]["daily"]["outcome"] == "busy"
    assert data["jobs"]["stats"] is None
    assert data["tables"]["v1_hub_work_allocations"]["default_rows"] == 3
    assert data["stats"]["latest_date"] == "2026-11-25"
