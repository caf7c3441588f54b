"""`hubctl metrics`: the exposition format, the atomic write, the slow-statement window, and the
command line against a database that refuses connections (the file is still written, and says
which source was down). The collectors' SQL runs against real PostgreSQL in Molecule."""

import os
import re

import pytest

from hubctl import metrics
from hubctl_testutil import run_hubctl as run
from hubctl_testutil import write_config

DEAD_PORT = 1
# One sample line of the text exposition format 0.0.4.
SAMPLE = re.compile(r'^hub_[a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.e+-]+|NaN|[+-]Inf)$')


def test_render_groups_families_with_help_and_type_and_escapes_labels():
    jobs = metrics.Family("hub_job_last_outcome", "gauge", "outcome\nof the last run")
    jobs.add(1, hub_job="daily", outcome="ok")
    jobs.add(0, hub_job='we"ird\\job', outcome="failed")
    size = metrics.Family("hub_table_bytes", "gauge", "bytes")
    size.add(1.5e12, table="t", tier="live")
    empty = metrics.Family("hub_nothing", "gauge", "no samples")
    text = metrics.render([size, empty, jobs])
    assert text.endswith("\n")
    lines = text.splitlines()
    assert lines[0] == "# HELP hub_job_last_outcome outcome\\nof the last run"
    assert lines[1] == "# TYPE hub_job_last_outcome gauge"
    assert 'hub_job_last_outcome{hub_job="daily",outcome="ok"} 1' in lines
    assert 'hub_job_last_outcome{hub_job="we\\"ird\\\\job",outcome="failed"} 0' in lines
    assert 'hub_table_bytes{table="t",tier="live"} 1500000000000' in lines
    assert "hub_nothing" not in text           # a TYPE line with no sample is refused upstream
    for line in lines:
        assert line.startswith("# ") or SAMPLE.match(line), line


@pytest.mark.parametrize("value, text", [(True, "1"), (False, "0"), (3, "3"), (0.25, "0.25"),
                                         (float("nan"), "NaN"), (float("inf"), "+Inf")])
def test_values(value, text):
    assert metrics.format_value(value) == text


def test_render_refuses_the_same_labels_twice_and_foreign_names():
    fam = metrics.Family("hub_x", "gauge", "x")
    fam.add(1, a="1")
    fam.add(2, a="1")
    with pytest.raises(ValueError, match="same labels twice"):
        metrics.render([fam])
    with pytest.raises(ValueError, match="hub_ prefix"):
        metrics.Family("node_x", "gauge", "clashes with an exporter's")
    with pytest.raises(ValueError, match="label name"):
        metrics.Family("hub_y", "gauge", "y").add(1, **{"bad-label": "v"})


def test_write_atomic_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "hub.prom"
    path.write_text("old\n")
    metrics.write_atomic(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(os.listdir(tmp_path)) == ["hub.prom"]


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "hub.prom"
    path.write_text("old\n")
    with pytest.raises(TypeError):
        metrics.write_atomic(str(path), None)     # cannot be written: nothing replaced
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(tmp_path)) == ["hub.prom"]


def test_slow_statements_counts_what_the_window_proves():
    # queryid: [calls, total_ms, max_ms] at the last run
    previous = {"1": [10, 1000.0, 200.0], "2": [5, 500.0, 3000.0], "3": [100, 100.0, 5.0]}
    current = [
        (1, 12, 1000.0 + 2 * 1600.0, 1600.0),   # two new calls at 1.6 s each: slow
        (2, 6, 500.0 + 1200.0, 3000.0),         # one new call of 1.2 s, max unchanged: slow
        (3, 200, 200.0, 5.0),                   # fast
        (4, 1, 1500.0, 1500.0),                 # new statement, 1.5 s: slow
        (5, 3, 30.0, 10.0),                     # new and fast
    ]
    slow, slowest, state = metrics.slow_statements(previous, current, 1.0)
    assert slow == 3
    assert slowest == pytest.approx(1.6)
    assert state["1"] == [12, 1000.0 + 3200.0, 1600.0]
    # Nothing new since: nothing slow, nothing proven.
    assert metrics.slow_statements(state, current, 1.0)[:2] == (0, 0.0)


def test_slow_statements_after_a_reset_counts_the_new_totals():
    previous = {"7": [1000, 50_000.0, 40.0]}
    slow, slowest, _ = metrics.slow_statements(previous, [(7, 2, 2400.0, 2000.0)], 1.0)
    assert (slow, slowest) == (1, pytest.approx(2.0))


def test_volume_and_textfile_arguments_are_checked_before_anything(repo_root, tmp_path):
    cfg = write_config(tmp_path, port=DEAD_PORT)
    for argv, fragment in [
        (["--textfile", str(tmp_path / "hub.txt")], "ending in .prom"),
        (["--textfile", "hub.prom"], "absolute path"),
        (["--textfile", str(tmp_path / "missing" / "hub.prom")], "directory does not exist"),
        (["--textfile", str(tmp_path / "hub.prom"), "--volume", "data"], "NAME=/absolute/path"),
        (["--textfile", str(tmp_path / "hub.prom"), "--volume", "a=/", "--volume", "a=/tmp"],
         "each NAME once"),
        (["--textfile", str(tmp_path / "hub.prom"), "--slow-seconds", "0"], "more than 0"),
    ]:
        p = run(repo_root, "--config", cfg, "metrics", *argv)
        assert p.returncode == 2, (argv, p)
        assert fragment in p.stderr, (argv, p.stderr)
    assert not (tmp_path / "hub.prom").exists()


def test_a_dead_database_still_writes_the_file_and_says_which_source_failed(repo_root,
                                                                            tmp_path):
    cfg = write_config(tmp_path, port=DEAD_PORT)
    prom = tmp_path / "hub.prom"
    p = run(repo_root, "--config", cfg, "metrics", "--textfile", str(prom),
            "--volume", f"data={tmp_path}", "--volume", f"repo1={tmp_path}/not-yet")
    assert p.returncode == 1, p
    assert "step=database" in p.stdout and "outcome=failed" in p.stdout
    assert "failed_sources=database,volume_repo1" in p.stdout
    text = prom.read_text()
    assert 'hub_metrics_source_up{source="database"} 0' in text
    # A volume whose path is missing is down on its own; the data volume is still reported.
    assert 'hub_metrics_source_up{source="volume_repo1"} 0' in text
    assert 'hub_metrics_source_up{source="volume_data"} 1' in text
    assert 'volume="repo1"' not in text.replace('source="volume_repo1"', "")
    st = os.statvfs(tmp_path)
    assert (f'hub_volume_size_bytes{{path="{tmp_path}",volume="data"}} '
            f'{st.f_blocks * st.f_frsize}') in text
    assert re.search(r"^hub_metrics_timestamp_seconds \d+", text, re.M)
    # No state without the statements source, and no job series from a database never read.
    assert not (tmp_path / "hub.state.json").exists()
    assert "hub_job_last_outcome" not in text
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line


def test_the_slowest_time_is_held_so_a_second_run_cannot_hide_it():
    # A run at t=1000 proved 1.5 s; cron's run 3 s later proves nothing new: still 1.5 s.
    value, held = metrics.held_slowest([], 1000.0, 1.5)
    assert (value, held) == (1.5, [[1000.0, 1.5]])
    value, held = metrics.held_slowest(held, 1003.0, 0.0)
    assert (value, held) == (1.5, [[1000.0, 1.5]])
    # A faster one later does not lower it while the hold lasts; a slower one raises it.
    value, held = metrics.held_slowest(held, 1060.0, 0.2)
    assert value == 1.5 and held == [[1000.0, 1.5], [1060.0, 0.2]]
    assert metrics.held_slowest(held, 1061.0, 2.5)[0] == 2.5
    # Past the hold it is gone; a damaged or future entry never counts.
    assert metrics.held_slowest(held, 1000.0 + metrics.SLOWEST_HOLD_SECONDS, 0.0) == (0.2, [[1060.0, 0.2]])
    assert metrics.held_slowest([["x", 9], [5000.0, 9.0], None], 1100.0, 0.0) == (0.0, [])
