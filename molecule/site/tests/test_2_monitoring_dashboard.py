"""The dashboard on the monitoring host, in a real browser: Debian's chromium, headless, on the
monitoring host itself (the page is on 127.0.0.1 there, as an operator reaches it through an
SSH tunnel). It reads the scenario's live Prometheus, so its charts hold the scenario's data.

The screenshot is copied to the controller (.cache/dashboard-d<release>.png), where
docs/images/dashboard.png was taken from. The page's load time is printed for
docs/performance.md.
"""

import re
import time
from pathlib import Path

import pytest
from conftest import host_of

testinfra_hosts = ["ansible://monitoring"]

URL = "http://127.0.0.1:9096/?hours=1"
CHROMIUM = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars"
CACHE = Path(__file__).resolve().parents[3] / ".cache"


@pytest.fixture(scope="module")
def browser():
    """The monitoring host with Debian's chromium installed (a test tool, not the role's)."""
    monitor = host_of("monitoring")
    if monitor.run("command -v chromium").rc != 0:
        started = time.time()
        got = monitor.run("DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
                          "chromium fonts-dejavu-core")
        assert got.rc == 0, got.stdout[-2000:] + got.stderr[-2000:]
        print(f"chromium installed on the monitoring host in {time.time() - started:.0f} s")
    return monitor


def test_the_dashboard_runs_as_prometheus_on_localhost_only(browser):
    unit = browser.service("hub-dashboard")
    assert unit.is_running and unit.is_enabled
    pid = browser.run("systemctl show -P MainPID hub-dashboard").stdout.strip()
    assert browser.run(f"ps -o user= -p {pid}").stdout.strip() == "prometheus"
    assert "hub_dashboard.py" in browser.run(f"ps -o args= -p {pid}").stdout
    # Column 4 of ss is the local address: the port is bound to the loopback address only.
    listening = browser.run("ss -ltnH 'sport = :9096' | awk '{print $4}'").stdout.split()
    assert listening == ["127.0.0.1:9096"], listening


def test_the_page_loads_in_a_browser_with_data_in_every_chart(browser):
    started = time.time()
    dom = browser.run(f"{CHROMIUM} --dump-dom '{URL}'")
    elapsed = time.time() - started
    assert dom.rc == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "Prometheus did not answer" not in page
    sections = re.findall(r'<section class="indicator">(.*?)</section>', page, re.S)
    assert len(sections) == 4
    for section in sections:
        title = re.search(r"<h3>(.*?)</h3>", section).group(1)
        lines = re.findall(r'class="series"[^>]* points="([^"]*)"', section)
        assert lines and all(len(p.split()) >= 2 for p in lines), f"{title}: no data points"
    # The four live tables in the size chart, both volumes in the disk chart, thresholds drawn.
    assert len(re.findall(r'class="series"', sections[0])) == 4
    assert re.search(r"data: \d+ %", sections[3]) and re.search(r"repo1: \d+ %", sections[3])
    assert page.count('class="threshold"') == 3
    # The last run of every job, both repositories' backups, the capacity section.
    assert "<td>daily</td>" in page
    assert re.search(r"<td>1</td><td>full</td>", page) and re.search(r"<td>2</td><td>full</td>", page)
    assert "Capacity (hubctl capacity)" in page
    print(f"dashboard: page rendered by chromium (process start to DOM) in {elapsed:.2f} s")


def test_the_page_is_served_quickly_and_the_screenshot_is_written(browser):
    timing = browser.run("python3 -c \"import time, urllib.request; t = time.time(); "
                         f"n = len(urllib.request.urlopen('{URL.replace('hours=1', 'hours=168')}', timeout=30).read()); "
                         "print(n, round(time.time() - t, 3))\"")
    assert timing.rc == 0, timing.stderr
    size, seconds = timing.stdout.split()
    print(f"dashboard: 168 h page, {size} bytes, served in {seconds} s")
    shot = "/tmp/hub-dashboard.png"
    browser.run(f"rm -f {shot}")
    got = browser.run(f"{CHROMIUM} --window-size=860,2300 --screenshot={shot} '{URL}'")
    assert got.rc == 0, got.stderr[-2000:]
    header = browser.run(f"head -c 8 {shot} | od -An -tx1").stdout.split()
    assert header == ["89", "50", "4e", "47", "0d", "0a", "1a", "0a"]
    assert browser.file(shot).size > 20000
    release = browser.run(". /etc/os-release; echo $VERSION_ID").stdout.strip()
    CACHE.mkdir(exist_ok=True)
    browser.ansible("ansible.builtin.fetch", f"src={shot} dest={CACHE}/dashboard-d{release}.png flat=true",
                    check=False)
    assert (CACHE / f"dashboard-d{release}.png").stat().st_size > 20000
