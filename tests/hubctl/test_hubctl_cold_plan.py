"""Which archived months go cold, what their files are called, and what a manifest must say."""

import datetime as dt
import json

import pytest

from hubctl import cold
from hubctl.cold import (UNVERIFIED, build_manifest, cold_paths, eligible_on, is_eligible,
                         manifest_path, manifest_problems, parse_month, plan_cold, restored_name)

D = dt.date


def test_a_month_goes_cold_once_its_end_is_cold_after_days_old():
    # August 2025 ends on 2025-09-01; 365 days later is 2026-09-01.
    assert eligible_on(D(2025, 8, 1), 365) == D(2026, 9, 1)
    assert is_eligible(D(2025, 8, 1), D(2026, 9, 1), 365)
    assert not is_eligible(D(2025, 8, 1), D(2026, 8, 31), 365)
    # December rolls over the year.
    assert eligible_on(D(2025, 12, 1), 365) == D(2027, 1, 1)


def test_only_verified_archived_attached_old_months_are_exported_oldest_first():
    attached = {D(2025, 9, 1): "p_09", D(2025, 7, 1): "p_07", D(2025, 8, 1): "p_08",
                D(2026, 1, 1): "p_01"}
    ledger = {D(2025, 7, 1): "archived", D(2025, 8, 1): "archived", D(2025, 9, 1): "archived",
              D(2026, 1, 1): "archived"}
    plan = plan_cold(ledger, attached, D(2026, 10, 15), 365)
    # cutoff 2025-10-15: July, August and September have ended by then; January has not
    assert plan.export == [(D(2025, 7, 1), "p_07"), (D(2025, 8, 1), "p_08"),
                           (D(2025, 9, 1), "p_09")]
    assert plan.unverified == plan.unrecorded == plan.missing == []


def test_one_month_only():
    attached = {D(2025, 7, 1): "p_07", D(2025, 8, 1): "p_08"}
    ledger = {D(2025, 7, 1): "archived", D(2025, 8, 1): "archived"}
    plan = plan_cold(ledger, attached, D(2026, 10, 15), 365, only=D(2025, 8, 1))
    assert plan.export == [(D(2025, 8, 1), "p_08")]
    assert plan_cold(ledger, attached, D(2026, 10, 15), 365, only=D(2025, 6, 1)).export == []


def test_months_without_verified_figures_are_not_exported():
    attached = {D(2025, 6, 1): "p_06", D(2025, 7, 1): "p_07", D(2025, 8, 1): "p_08"}
    # June: attached by hand, no ledger row; July: moved, not read back yet; August: 'live'
    ledger = {D(2025, 7, 1): UNVERIFIED, D(2025, 8, 1): "live"}
    plan = plan_cold(ledger, attached, D(2026, 12, 1), 365)
    assert plan.export == []
    assert plan.unverified == [D(2025, 7, 1)]
    assert plan.unrecorded == [D(2025, 6, 1), D(2025, 8, 1)]


def test_an_archived_month_without_its_partition_is_reported():
    plan = plan_cold({D(2025, 7, 1): "archived", D(2025, 6, 1): "cold"}, {}, D(2026, 12, 1), 365)
    assert plan.export == [] and plan.missing == [D(2025, 7, 1)]


def test_cold_months_are_left_alone():
    # The partition of a cold month was dropped; the ledger row stays 'cold'.
    plan = plan_cold({D(2025, 7, 1): "cold"}, {}, D(2027, 12, 1), 365)
    assert plan == cold.ColdPlan(export=[], unverified=[], unrecorded=[], missing=[])


@pytest.mark.parametrize("text, expected", [
    ("2025-08", D(2025, 8, 1)),
    ("1999-12", D(1999, 12, 1)),
])
def test_parse_month(text, expected):
    assert parse_month(text) == expected


@pytest.mark.parametrize("text", ["2025-13", "2025-00", "2025-8", "25-08", "2025-08-01", "", "x"])
def test_parse_month_refuses(text):
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        parse_month(text)


def test_file_names():
    p = cold_paths("/var/lib/hub/cold/", "v1_hub_work_allocations", D(2025, 8, 1))
    assert p.dir == "/var/lib/hub/cold/v1_hub_work_allocations"
    assert p.data == ("/var/lib/hub/cold/v1_hub_work_allocations/"
                      "v1_hub_work_allocations_2025-08.copy.zst")
    assert p.manifest == ("/var/lib/hub/cold/v1_hub_work_allocations/"
                          "v1_hub_work_allocations_2025-08.manifest.json")
    # temporary names: same directory (an atomic rename), hidden, never the final name
    for tmp, final in ((p.data_tmp, p.data), (p.manifest_tmp, p.manifest)):
        assert tmp.rsplit("/", 1)[0] == p.dir
        assert tmp.rsplit("/", 1)[1].startswith(".") and tmp != final
    assert manifest_path(p.data) == p.manifest
    assert restored_name("v1_hub_work_allocations", D(2025, 8, 1)) == \
        "v1_hub_work_allocations_p2025_08"


@pytest.mark.parametrize("cold_dir, table", [
    ("relative/dir", "v1_hub_work_allocations"),
    ("/var/lib/hub/cold", "../etc"),
    ("/var/lib/hub/cold", "Weird Name"),
])
def test_file_names_refuse_what_would_escape(cold_dir, table):
    with pytest.raises(ValueError):
        cold_paths(cold_dir, table, D(2025, 8, 1))


def _manifest(**over):
    args = dict(table="v1_hub_work_allocations", month=D(2025, 8, 1),
                partition="v1_hub_work_allocations_p2025_08", control="work_date",
                columns=[("allocation_key", "uuid", True), ("work_date", "date", True),
                         ("finished_at", "timestamp with time zone", False)],
                row_count=101, checksum=123456789012345678901, sha256="ab" * 32, size=4242,
                server_version="17.6", timezone="Asia/Seoul", datestyle="ISO, MDY",
                exported_at="2026-11-26T03:00:05+09:00",
                file_name="v1_hub_work_allocations_2025-08.copy.zst",
                checksum_columns=["allocation_key", "work_date"])
    args.update(over)
    return build_manifest(**args)


def test_manifest_says_what_the_file_is_without_the_database():
    m = _manifest()
    assert json.loads(json.dumps(m)) == m          # plain JSON
    assert m["table"] == "v1_hub_work_allocations" and m["month"] == "2025-08"
    assert m["range"] == ["2025-08-01", "2025-09-01"]
    assert [c["name"] for c in m["columns"]] == ["allocation_key", "work_date", "finished_at"]
    assert m["columns"][2] == {"name": "finished_at", "type": "timestamp with time zone",
                               "not_null": False}
    # the checksum is a numeric sum that can exceed 64 bits: kept as text, exactly
    assert m["row_count"] == 101 and m["checksum"] == "123456789012345678901"
    assert (m["sha256"], m["bytes"]) == ("ab" * 32, 4242)
    assert m["server_version"] == "17.6" and m["timezone"] == "Asia/Seoul"
    assert m["exported_at"] == "2026-11-26T03:00:05+09:00"
    assert "COPY text" in m["content"] and "zstd" in m["content"]
    # the file has three columns; the checksum covers the two the month had when archived
    assert m["checksum_columns"] == ["allocation_key", "work_date"]
    assert "checksum_columns" in m["checksum_sql"]


def test_manifest_problems():
    m = _manifest()
    good = dict(table="v1_hub_work_allocations", month=D(2025, 8, 1), row_count=101,
                checksum=123456789012345678901, sha256="ab" * 32, size=4242)
    assert manifest_problems(m, **good) == []
    assert manifest_problems(m, **{**good, "sha256": None, "size": None}) == []
    bad = manifest_problems(m, **{**good, "row_count": 100, "sha256": "cd" * 32})
    assert any(p.startswith("row_count is 101") for p in bad)
    assert any(p.startswith("sha256 is") for p in bad)
    assert manifest_problems(m, **{**good, "month": D(2025, 9, 1)}) == [
        "month is '2025-08', expected '2025-09'"]
    assert manifest_problems({**m, "columns": []}, **good) == ["columns are missing or malformed"]
    assert manifest_problems([], **good) == ["it is not a JSON object"]


def test_manifest_problems_compare_the_checksum_columns_when_the_manifest_has_them():
    m = _manifest()
    good = dict(table="v1_hub_work_allocations", month=D(2025, 8, 1), row_count=101,
                checksum=123456789012345678901)
    assert manifest_problems(m, **good, checksum_columns=("allocation_key", "work_date")) == []
    assert manifest_problems(m, **good, checksum_columns=["allocation_key", "work_date",
                                                          "finished_at"]) == [
        "checksum_columns is ['allocation_key', 'work_date'], expected "
        "['allocation_key', 'work_date', 'finished_at']"]
    # A manifest written before migration 0010 names none: nothing to compare.
    older = {k: v for k, v in m.items() if k != "checksum_columns"}
    assert manifest_problems(older, **good, checksum_columns=["allocation_key"]) == []


def test_supplements_are_named_by_their_time_beside_the_months_file():
    stamp = cold.supplement_stamp(dt.datetime(2026, 12, 7, 3, 0, 12, tzinfo=dt.timezone.utc))
    assert stamp == "20261207T030012Z"
    # Another zone's clock gives the same UTC name.
    plus9 = dt.timezone(dt.timedelta(hours=9))
    assert cold.supplement_stamp(dt.datetime(2026, 12, 7, 12, 0, 12, tzinfo=plus9)) == stamp
    p = cold.supplement_paths("/var/lib/hub/cold/t/t_2025-08.copy.zst", stamp)
    assert p.data == "/var/lib/hub/cold/t/t_2025-08.late-20261207T030012Z.copy.zst"
    assert p.manifest == "/var/lib/hub/cold/t/t_2025-08.late-20261207T030012Z.manifest.json"
    assert p.data_tmp == "/var/lib/hub/cold/t/.t_2025-08.late-20261207T030012Z.copy.zst.tmp"
    with pytest.raises(ValueError):
        cold.supplement_paths("/c/t/t_2025-08.copy.zst", "01")
    with pytest.raises(ValueError):
        cold.supplement_paths("/c/t/t_2025-08.json", stamp)


def test_unlisted_supplements_are_the_ones_no_commit_recorded(tmp_path):
    d = tmp_path / "t"
    d.mkdir()
    names = ["t_2025-08.copy.zst", "t_2025-08.manifest.json",
             "t_2025-08.late-20261207T030012Z.copy.zst", "t_2025-08.late-20261207T030012Z.manifest.json",
             "t_2025-08.late-20261208T030012Z.copy.zst", "t_2025-08.late-20261208T030012Z.manifest.json",
             ".t_2025-08.late-20261209T030012Z.copy.zst.tmp", "t_2025-09.late-20261208T030012Z.copy.zst"]
    for n in names:
        (d / n).write_text("x")
    listed = [{"file": "t_2025-08.late-20261207T030012Z.copy.zst"}]
    found = cold.unlisted_supplements(str(d / "t_2025-08.copy.zst"), listed)
    assert [p.rsplit("/", 1)[1] for p in found] == [
        ".t_2025-08.late-20261209T030012Z.copy.zst.tmp",
        "t_2025-08.late-20261208T030012Z.copy.zst", "t_2025-08.late-20261208T030012Z.manifest.json"]
    assert cold.unlisted_supplements(str(tmp_path / "gone" / "t_2025-08.copy.zst"), []) == []


def test_supplement_totals_are_what_the_month_file_lacks():
    sups = [{"row_count": 2, "checksum": "1152921504606846975"}, {"row_count": 1, "checksum": "5"}]
    assert cold.supplement_totals(sups) == (3, 1152921504606846980)
    assert cold.supplement_totals(()) == (0, 0)
