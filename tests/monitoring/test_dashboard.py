"""The dashboard's drawing (roles/monitoring/files/hub_dashboard.py): what a chart and the page
hold for given Prometheus answers. The page against the real Prometheus, in a real browser, is
molecule/site/tests/test_2_monitoring_dashboard.py."""

import contextlib
import http.server
import importlib.util
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location(
    "hub_dashboard", Path(__file__).resolve().parents[2] / "roles/monitoring/files/hub_dashboard.py")
dash = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(dash)

NOW = 1_800_000_000.0
CFG = {"thresholds": {"table_bytes_max": "10000000000", "query_seconds_max": 1.0, "disk_used_ratio_max": 0.7}}


def matrix(metric, values):
    return {"metric": metric, "values": [[NOW - 60 * (len(values) - i), str(v)] for i, v in enumerate(values)]}


class Answers:
    """Prometheus' answers by expression, as its HTTP API gives them."""

    def __init__(self, ranges=None, instant=None, alerts=()):
        self.ranges, self.instant, self._alerts, self.asked = ranges or {}, instant or {}, list(alerts), []

    def query_range(self, expr, start, end, step):
        self.asked.append((expr, start, end, step))
        return self.ranges.get(expr, [])

    def query(self, expr):
        return self.instant.get(expr, [])

    def alerts(self):
        return self._alerts


def points(svg):
    return [p.split() for p in re.findall(r'class="series"[^>]* points="([^"]*)"', svg)]


def test_a_chart_draws_each_series_and_the_threshold_inside_its_box():
    svg = dash.svg_chart([matrix({"table": "a"}, [1, 2, 3]), matrix({"table": "b"}, [5, 5, 5])],
                         NOW - 180, NOW, dash.fmt_bytes, threshold=4, label_keys=("table",))
    series = points(svg)
    assert [len(s) for s in series] == [3, 3]
    for x, y in (map(float, p.split(",")) for s in series for p in s):
        assert dash.PAD <= x <= dash.WIDTH - dash.PAD and 0 <= y <= dash.HEIGHT
    assert svg.count('class="threshold"') == 1
    # b (5) is above the threshold (4): its line is drawn higher (smaller y) than the threshold's.
    y_b = float(series[1][0].split(",")[1])
    y_t = float(re.search(r'class="threshold"[^>]* y1="([0-9.]+)"', svg).group(1))
    assert y_b < y_t
    assert "a: 3 B" in svg and "b: 5 B" in svg


def test_an_empty_chart_says_so_and_divides_by_nothing():
    svg = dash.svg_chart([], NOW - 3600, NOW, dash.fmt_percent)
    assert points(svg) == [] and "no data in this range" in svg


def test_the_page_holds_the_four_indicators_jobs_backups_ledger_and_capacity():
    def v(metric, x):
        return {"metric": metric, "value": [NOW, str(x)]}
    prom = Answers(
        ranges={'hub_table_bytes{tier="live"}': [matrix({"table": "v1_hub_work_allocations"}, [1e9, 2e9])],
                "1 - hub_volume_free_bytes / hub_volume_size_bytes": [matrix({"instance": "hub", "volume": "data"}, [0.5, 0.6])]},
        instant={"hub_job_last_run_timestamp_seconds": [v({"hub_job": "daily"}, NOW - 7200)],
                 "hub_job_last_outcome == 1": [v({"hub_job": "daily", "outcome": "failed"}, 1)],
                 "hub_backup_newest_age_seconds": [v({"repo": "2", "type": "full"}, 86400 * 3)],
                 "hub_ledger_months": [v({"table": "v1_hub_work_allocations", "state": "cold"}, 2)],
                 "hub_capacity_history_days": [v({}, 3)]},
        alerts=[{"state": "firing", "labels": {"alertname": "HubDiskFilling", "severity": "warning"},
                 "annotations": {"summary": "data <b>75 %</b>"}}])
    page = dash.build_page(prom, CFG, 24, now=NOW)
    assert page.count('<section class="indicator">') == 4
    assert [a[0] for a in prom.asked] == [i[1] for i in dash.indicators(CFG)]
    assert all(end - start == 24 * 3600 for _, start, end, _ in prom.asked)
    assert len(points(page)) == 2 and page.count('class="threshold"') == 3
    assert '<span class="o-failed">failed</span>' in page and "2.0 h ago" in page and "never" in page
    assert "72.0 h" in page
    assert "not enough history yet: size snapshots over 3 day(s)" in page
    assert "nothing reported" not in page.split("Capacity")[1]
    # Alert text is escaped, never markup.
    assert "data &lt;b&gt;75 %&lt;/b&gt;" in page


@contextlib.contextmanager
def serving(prom):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), dash.make_handler(prom, CFG))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("path, code", [("/", 200), ("/?hours=24", 200), ("/?hours=0", 400),
                                        ("/?hours=x", 400), ("/other", 404), ("/healthz", 200)])
def test_the_server_answers_each_path(path, code):
    with serving(Answers()) as url:
        try:
            got = urllib.request.urlopen(url + path, timeout=10).status
        except urllib.error.HTTPError as exc:
            got = exc.code
    assert got == code


def test_prometheus_down_gives_a_503_page_that_says_so():
    class Down(Answers):
        def alerts(self):
            raise OSError("connection refused")

    with serving(Down()) as url:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "/", timeout=10)
        assert err.value.code == 503
        assert "Prometheus did not answer: connection refused" in err.value.read().decode()


def test_the_capacity_section_says_what_is_missing():
    def v(metric, x):
        return {"metric": metric, "value": [NOW, str(x)]}

    # hubctl metrics' capacity source down: no series at all.
    assert "no capacity figures" in dash.build_page(Answers(), CFG, 24, now=NOW)
    # Enough history, the data volume shrinking: growth but no date.
    page = dash.build_page(Answers(instant={
        "hub_capacity_history_days": [v({}, 31)], "hub_capacity_enough_history": [v({}, 1)],
        "hub_capacity_growth_bytes_per_day": [v({"scope": "volume_data"}, -5e6)]}), CFG, 24, now=NOW)
    assert "not enough history" not in page and "reaches neither 70 % nor 100 %" in page
    assert "<td>volume_data</td><td>-150.0 MB</td>" in page
