"""The pure parts of `hubctl convert` (no database): partition names as pg_partman makes them,
the months to make, the column check, the per-day comparison, the order of the phases."""

import datetime as dt
from pathlib import Path

import pytest
import yaml

from hubctl import convert
from hubctl.convert import (ColumnInfo, compare_days, legacy_index_name, match_columns,
                            partition_name, plan_months, plan_phase, progress, stage_of)

D = dt.date
REPO = Path(__file__).resolve().parent.parent.parent


# --------------------------------------------------------------------------- names and months

def test_partition_names_follow_each_partman_version():
    # 4.7: datetime_string 'YYYY_MM' for monthly sets; 5.x: 'YYYYMMDD' for every interval >= 1 day
    assert partition_name("v1_hub_work_allocations", D(2026, 8, 1), 4) == "v1_hub_work_allocations_p2026_08"
    assert partition_name("v1_hub_work_allocations", D(2026, 8, 1), 5) == "v1_hub_work_allocations_p20260801"
    assert partition_name("v1_hub_work_allocations", D(2027, 1, 1), 4) == "v1_hub_work_allocations_p2027_01"
    with pytest.raises(ValueError):
        partition_name("v1_hub_work_allocations", D(2026, 8, 1), 3)


def test_months_cover_the_rows_and_0004s_window_without_a_gap():
    # rows from 2026-05 to 2026-11 (the seed's six months), today 2026-11-27
    wanted, before, beyond = plan_months([D(2026, m, 1) for m in range(5, 12)], D(2026, 11, 27))
    assert wanted[0] == D(2026, 5, 1) and wanted[-1] == D(2027, 3, 1)
    assert len(wanted) == 11 and before == beyond == []


def test_months_start_at_0004s_first_month_when_the_rows_are_recent():
    wanted, _, _ = plan_months([D(2026, 11, 1)], D(2026, 11, 27))
    assert wanted[0] == D(2026, 7, 1)       # the month of 2026-11-27 - 120 days
    assert wanted[-1] == D(2027, 3, 1)


def test_months_of_an_empty_table_are_0004s_window():
    wanted, before, beyond = plan_months([], D(2027, 1, 15))
    assert (wanted[0], wanted[-1], before, beyond) == (D(2026, 9, 1), D(2027, 5, 1), [], [])


def test_rows_far_ahead_are_left_to_the_catch_all():
    wanted, _, beyond = plan_months([D(2026, 11, 1), D(2099, 1, 1)], D(2026, 11, 27))
    assert wanted[-1] == D(2027, 3, 1)
    assert beyond == [D(2099, 1, 1)]


def test_a_stray_date_long_ago_is_left_to_the_catch_all_but_years_of_history_get_months():
    wanted, before, _ = plan_months([D(1970, 1, 1), D(2020, 3, 1), D(2026, 11, 1)], D(2026, 11, 27))
    assert before == [D(1970, 1, 1)]
    assert wanted[0] == D(2020, 3, 1) and len(wanted) == 85


# --------------------------------------------------------------------------- columns

NEW = [
    ColumnInfo("allocation_key", "uuid", True, True),
    ColumnInfo("allocated_at", "timestamp with time zone", True, True),
    ColumnInfo("finished_at", "timestamp with time zone", False, False),
    ColumnInfo("work_date", "date", True, True),
    ColumnInfo("execution_time_ms", "integer", False, False),
    ColumnInfo("proxy_id", "smallint", False, False),
    ColumnInfo("status", "text", True, True),
    ColumnInfo("client_id", "text", True, False),
    ColumnInfo("keyword", "text", True, False),
]

# The seed-era table of the Molecule scenario: other order, other types.
SEED = [
    ColumnInfo("allocation_key", "uuid", True, True),
    ColumnInfo("client_id", "character varying(64)", True, False),
    ColumnInfo("keyword", "character varying(255)", True, False),
    ColumnInfo("proxy_id", "integer", False, False),
    ColumnInfo("status", "character varying(20)", True, True),
    ColumnInfo("allocated_at", "timestamp with time zone", True, True),
    ColumnInfo("finished_at", "timestamp with time zone", False, False),
    ColumnInfo("execution_time_ms", "integer", False, False),
    ColumnInfo("work_date", "date", True, True),
]


def test_the_seed_table_fits_in_the_new_tables_column_order():
    common, problems, warnings = match_columns(SEED, NEW)
    assert problems == [] and warnings == []
    assert [c.name for c in common] == [c.name for c in NEW]
    proxy = next(c for c in common if c.name == "proxy_id")
    assert (proxy.new_type, proxy.legacy_type) == ("smallint", "integer")


def test_a_legacy_column_with_no_place_is_refused():
    _, problems, _ = match_columns(SEED + [ColumnInfo("id", "bigint", True, True)], NEW)
    assert len(problems) == 1 and problems[0].startswith("legacy column id (bigint)")


def test_a_required_new_column_missing_from_legacy_is_refused():
    legacy = [c for c in SEED if c.name != "keyword"]
    _, problems, _ = match_columns(legacy, NEW)
    assert problems == ["new column keyword (text) is NOT NULL without a default and the legacy "
                        "table has no such column"]


def test_an_optional_new_column_may_be_missing():
    common, problems, _ = match_columns([c for c in SEED if c.name != "proxy_id"], NEW)
    assert problems == [] and "proxy_id" not in [c.name for c in common]


def test_a_nullable_legacy_column_that_becomes_not_null_is_a_warning():
    legacy = [ColumnInfo(c.name, c.type, False, c.has_default) if c.name == "status" else c
              for c in SEED]
    _, problems, warnings = match_columns(legacy, NEW)
    assert problems == [] and len(warnings) == 1 and warnings[0].startswith("status is NOT NULL")


def test_the_key_columns_are_required():
    legacy = [c for c in SEED if c.name != "work_date"]
    _, problems, _ = match_columns(legacy, NEW)
    assert any("no work_date column" in p for p in problems)


# --------------------------------------------------------------------------- verify

def test_equal_days_give_no_mismatch():
    day = {D(2026, 11, 1): (10, "123"), D(2026, 11, 2): (3, "9")}
    assert compare_days(day, dict(day)) == []


def test_a_day_that_differs_or_is_missing_on_one_side_is_reported():
    legacy = {D(2026, 11, 1): (10, "123"), D(2026, 11, 2): (3, "9"), D(2026, 11, 3): (1, "5")}
    new = {D(2026, 11, 1): (10, "124"), D(2026, 11, 3): (1, "5"), D(2026, 11, 4): (2, "7")}
    assert compare_days(legacy, new) == [
        (D(2026, 11, 1), (10, "123"), (10, "124")),
        (D(2026, 11, 2), (3, "9"), None),
        (D(2026, 11, 4), None, (2, "7")),
    ]


def test_progress_gives_percent_and_eta():
    assert progress(0, 100, 0.0) == {"percent": "0.0", "eta_s": None}
    assert progress(25, 100, 10.0) == {"percent": "25.0", "eta_s": 30}
    assert progress(100, 100, 40.0) == {"percent": "100.0", "eta_s": 0}


def test_legacy_index_names_take_the_legacy_tables_name():
    assert legacy_index_name("v1_hub_work_allocations_pkey") == "v1_hub_work_allocations_legacy_pkey"
    assert legacy_index_name("allocations_lookup") == "allocations_lookup_legacy"
    assert len(legacy_index_name("v1_hub_work_allocations_" + "x" * 60)) == 63


# --------------------------------------------------------------------------- stages and order

@pytest.mark.parametrize("live_kind, renamed, scaffold, phase, stage", [
    (None, False, False, None, "absent"),
    ("p", False, False, None, "partitioned"),
    ("r", False, False, None, "seed"),
    ("r", False, True, None, "preparing"),          # the playbook made hub_convert; no state yet
    ("r", False, True, "preparing", "preparing"),
    ("r", False, True, "prepared", "prepared"),
    ("p", True, True, "swapped", "swapped"),
    ("p", False, True, "finalizing", "finalizing"),
])
def test_stage_of(live_kind, renamed, scaffold, phase, stage):
    assert stage_of(live_kind, renamed, scaffold, phase) == stage


def test_nothing_to_convert_stops_every_phase():
    for phase in ("prepare", "verify", "swap", "rollback", "finalize", "finish"):
        for stage in ("absent", "partitioned"):
            kind, why = plan_phase(phase, stage)
            assert kind == "refuse" and why.startswith("nothing to convert"), (phase, stage)
    assert plan_phase("status", "partitioned") is None


def test_phases_run_in_order():
    assert plan_phase("prepare", "seed") is None
    assert plan_phase("prepare", "prepared") is None            # a rerun verifies again
    assert plan_phase("swap", "prepared") is None
    assert plan_phase("swap", "preparing")[0] == "refuse"       # not verified
    assert plan_phase("swap", "seed")[0] == "refuse"
    assert plan_phase("swap", "swapped")[0] == "noop"
    assert plan_phase("finalize", "prepared")[0] == "refuse"    # swap first
    assert plan_phase("finalize", "swapped") is None
    assert plan_phase("finalize", "finalizing") is None          # resumes
    assert plan_phase("rollback", "swapped") is None
    assert plan_phase("rollback", "finalizing")[0] == "refuse"  # the legacy table is gone
    assert plan_phase("rollback", "seed")[0] == "noop"
    assert plan_phase("finish", "swapped")[0] == "refuse"


def test_the_playbooks_order_rules_are_hubctls():
    """roles/hub_convert/vars/main.yml repeats the rules for the preflight (before hubctl is
    installed); they must say the same."""
    rules = yaml.safe_load((REPO / "roles/hub_convert/vars/main.yml").read_text())
    refusals, done = rules["__hub_convert_refusals"], rules["__hub_convert_done_already"]
    for phase in rules["__hub_convert_phases"]:
        for stage in convert.STAGES:
            decision = plan_phase(phase, stage)
            if decision is None:
                assert stage not in refusals.get(phase, {}) and stage not in done.get(phase, {})
            elif decision[0] == "refuse":
                assert refusals[phase][stage] == decision[1], (phase, stage)
            else:
                assert done[phase][stage] == decision[1], (phase, stage)


def test_finalize_applies_the_roles_site_yml_applies_after_0001_in_its_order():
    build = [p for p in yaml.safe_load((REPO / "playbooks/hub_db.yml").read_text())
             if p.get("hosts") == "hub_db" and "roles" in p][0]
    site_roles = [r["role"] for r in build["roles"]]
    finalize = yaml.safe_load((REPO / "playbooks/migrate-partitioned.yml").read_text())[-1]
    roles = [t["ansible.builtin.include_role"]["name"] for t in finalize["tasks"]
             if t["ansible.builtin.include_role"]["name"] != "hub_convert"]
    assert roles == site_roles[site_roles.index("hub_schema"):][:len(roles)]
    assert roles[:2] == ["hub_schema", "maintenance"]
