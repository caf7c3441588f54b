#!/usr/bin/python3
"""The hub's morning page: one HTML page on the monitoring host, drawn from Prometheus.

    hub_dashboard.py --config /etc/prometheus/hub-dashboard.json

Serves GET / (the page; ?hours=N for the charts' range, default 168) and GET /healthz on the
address of the config (127.0.0.1 only, as Prometheus). Each request asks Prometheus' HTTP API
for what the page shows and draws the charts as inline SVG on the server: the page has no
script, loads nothing else and works in any browser, through the same SSH tunnel as
Prometheus' own page.

What it shows (docs/monitoring.md#the-dashboard): the seed's four indicators over time with
their thresholds (live table size, the slowest statement, the archive job's duration, disk
use), the last run of every job, each repository's backup age, the archive and cold ledger, the
capacity projection (hubctl metrics' hub_capacity_* series) and the alerts firing now.

Python's standard library only (Debian's python3): no package to install on the monitoring
host beyond what Prometheus needs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import http.server
import json
import math
import sys
import time
import urllib.parse
import urllib.request

DEFAULT_HOURS = 168
MAX_HOURS = 24 * 90
POINTS = 240           # samples a chart asks for over its range
WIDTH, HEIGHT, PAD = 720, 180, 44
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")


# --------------------------------------------------------------------------- Prometheus

class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url, self.timeout = url.rstrip("/"), timeout

    def _get(self, path: str, params: dict) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=self.timeout) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus: {body.get('error', 'query failed')}")
        return body["data"]

    def query(self, expr: str) -> list:
        return self._get("/api/v1/query", {"query": expr})["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list:
        return self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end,
                                                 "step": max(1, int(step))})["result"]

    def alerts(self) -> list:
        return self._get("/api/v1/alerts", {})["alerts"]


# --------------------------------------------------------------------------- drawing

def fmt_bytes(v: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v:.0f} B"


def fmt_seconds(v: float) -> str:
    if v >= 3600:
        return f"{v / 3600:.1f} h"
    if v >= 60:
        return f"{v / 60:.1f} min"
    return f"{v:.2f} s"


def fmt_percent(v: float) -> str:
    return f"{100 * v:.0f} %"


def label_of(metric: dict, keys) -> str:
    return ", ".join(str(metric.get(k, "")) for k in keys if metric.get(k)) or "value"


def svg_chart(series: list, start: float, end: float, fmt, threshold: float | None = None,
              label_keys=("instance",)) -> str:
    """series: Prometheus matrix results. One polyline each, the threshold as a dashed red
    line, the y axis from 0 to the larger of the data and the threshold."""
    values = [float(v) for s in series for _, v in s["values"] if math.isfinite(float(v))]
    top = max(values + ([threshold] if threshold is not None else []) + [0.0])
    top = top * 1.1 or 1.0
    span = max(end - start, 1.0)

    def x(t):
        return PAD + (float(t) - start) / span * (WIDTH - 2 * PAD)

    def y(v):
        return HEIGHT - PAD / 2 - float(v) / top * (HEIGHT - PAD)

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
             f'height="{HEIGHT}" role="img">',
             f'<line x1="{PAD}" y1="{y(0):.1f}" x2="{WIDTH - PAD}" y2="{y(0):.1f}" '
             'stroke="#999"/>',
             f'<text x="2" y="{y(top / 1.1) + 4:.1f}" class="axis">{html.escape(fmt(top / 1.1))}'
             '</text>',
             f'<text x="2" y="{y(0) + 4:.1f}" class="axis">0</text>',
             f'<text x="{PAD}" y="{HEIGHT - 2}" class="axis">'
             f'{_dt.datetime.fromtimestamp(start, _dt.timezone.utc):%m-%d %H:%M} UTC</text>',
             f'<text x="{WIDTH - PAD}" y="{HEIGHT - 2}" class="axis" text-anchor="end">'
             f'{_dt.datetime.fromtimestamp(end, _dt.timezone.utc):%m-%d %H:%M} UTC</text>']
    if threshold is not None:
        parts.append(f'<line class="threshold" x1="{PAD}" y1="{y(threshold):.1f}" '
                     f'x2="{WIDTH - PAD}" y2="{y(threshold):.1f}" stroke="#d62728" '
                     'stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{WIDTH - PAD + 2}" y="{y(threshold) + 4:.1f}" class="axis" '
                     f'fill="#d62728">{html.escape(fmt(threshold))}</text>')
    legend = []
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s["values"]
                       if math.isfinite(float(v)))
        parts.append(f'<polyline class="series" fill="none" stroke="{colour}" '
                     f'stroke-width="1.5" points="{pts}"/>')
        last = float(s["values"][-1][1]) if s["values"] else float("nan")
        legend.append(f'<span style="color:{colour}">&#9632;</span> '
                      f'{html.escape(label_of(s["metric"], label_keys))}: '
                      f'{html.escape(fmt(last)) if math.isfinite(last) else "-"}')
    parts.append("</svg>")
    if not series:
        legend.append('<span class="empty">no data in this range</span>')
    return "".join(parts) + '<div class="legend">' + " &nbsp; ".join(legend) + "</div>"


def table(headers, rows) -> str:
    if not rows:
        return '<p class="empty">nothing reported</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def ago(seconds: float) -> str:
    return fmt_seconds(max(0.0, seconds)) + " ago"


# --------------------------------------------------------------------------- the page

def indicators(cfg: dict) -> list:
    """(title, expr, format, threshold, label keys) of the seed's four indicators."""
    t = {k: float(v) for k, v in cfg["thresholds"].items()}
    return [
        ("Table size (live partitions)", 'hub_table_bytes{tier="live"}', fmt_bytes,
         t["table_bytes_max"], ("table",)),
        ("Query response time (slowest statement since the last run)",
         "hub_statement_slowest_seconds", fmt_seconds, t["query_seconds_max"], ("instance",)),
        ("Archive job duration (the daily job's last run)",
         'hub_job_last_duration_seconds{hub_job=~"daily|archive"}', fmt_seconds, None,
         ("hub_job",)),
        ("Disk use", "1 - hub_volume_free_bytes / hub_volume_size_bytes", fmt_percent,
         t["disk_used_ratio_max"], ("instance", "volume")),
    ]


def build_page(prom: Prometheus, cfg: dict, hours: int, now: float | None = None) -> str:
    now = time.time() if now is None else now
    start = now - hours * 3600
    step = hours * 3600 / POINTS
    out = [f"<h1>Hub database: {html.escape(cfg.get('title', 'morning page'))}</h1>",
           f'<p class="meta">{_dt.datetime.fromtimestamp(now, _dt.timezone.utc):%Y-%m-%d %H:%M} '
           f"UTC, the last {hours} h "
           + " ".join(f'<a href="?hours={h}">{h} h</a>' for h in (24, 168, 720)) + "</p>"]

    firing = [a for a in prom.alerts() if a.get("state") == "firing"]
    out.append("<h2>Alerts firing now</h2>")
    out.append(table(["alert", "severity", "where", "summary"], [
        [html.escape(a["labels"].get("alertname", "")), html.escape(a["labels"].get("severity", "")),
         html.escape(label_of(a["labels"], ("instance", "table", "volume", "repo", "hub_job"))),
         html.escape(a.get("annotations", {}).get("summary", ""))] for a in firing]))

    out.append("<h2>The seed's four indicators</h2>")
    for title, expr, fmt, threshold, keys in indicators(cfg):
        series = prom.query_range(expr, start, now, step)
        out.append(f'<section class="indicator"><h3>{html.escape(title)}</h3>'
                   f"{svg_chart(series, start, now, fmt, threshold, keys)}</section>")

    out.append("<h2>Last run of every job</h2>")
    runs = {r["metric"]["hub_job"]: float(r["value"][1])
            for r in prom.query("hub_job_last_run_timestamp_seconds")}
    success = {r["metric"]["hub_job"]: float(r["value"][1])
               for r in prom.query("hub_job_last_success_timestamp_seconds")}
    outcome = {r["metric"]["hub_job"]: r["metric"]["outcome"]
               for r in prom.query("hub_job_last_outcome == 1")}
    out.append(table(["job", "last outcome", "last run", "last success"], [
        [html.escape(j), f'<span class="o-{html.escape(outcome.get(j, ""))}">'
                         f'{html.escape(outcome.get(j, "-"))}</span>',
         ago(now - runs[j]), ago(now - success[j]) if j in success else "never"]
        for j in sorted(runs)]))

    out.append("<h2>Backups: the newest good backup in each repository</h2>")
    ages = prom.query("hub_backup_newest_age_seconds")
    out.append(table(["repository", "type", "age"], [
        [html.escape(r["metric"].get("repo", "")), html.escape(r["metric"].get("type", "")),
         fmt_seconds(float(r["value"][1]))]
        for r in sorted(ages, key=lambda r: (r["metric"].get("repo", ""), r["metric"].get("type", "")))]))

    out.append("<h2>Archive and cold ledger</h2>")
    months = {(r["metric"]["table"], r["metric"]["state"]): float(r["value"][1])
              for r in prom.query("hub_ledger_months")}
    rows = {(r["metric"]["table"], r["metric"]["state"]): float(r["value"][1])
            for r in prom.query("hub_ledger_rows")}
    cold = {r["metric"]["table"]: float(r["value"][1]) for r in prom.query("hub_cold_bytes")}
    tables = sorted({t for t, _ in months} | set(cold))
    out.append(table(["table", "archived months (rows)", "cold months (rows)", "cold files"], [
        [html.escape(t),
         f"{months.get((t, 'archived'), 0):.0f} ({rows.get((t, 'archived'), 0):,.0f})",
         f"{months.get((t, 'cold'), 0):.0f} ({rows.get((t, 'cold'), 0):,.0f})",
         fmt_bytes(cold.get(t, 0))] for t in tables]))

    out.append("<h2>Capacity (hubctl capacity)</h2>")
    history = prom.query("hub_capacity_history_days")
    enough = prom.query("hub_capacity_enough_history")
    reaches = prom.query("hub_capacity_volume_reaches_timestamp_seconds")
    growth = prom.query("hub_capacity_growth_bytes_per_day")
    data_growth = [r for r in growth if r["metric"].get("scope") == "volume_data"]
    if not history:
        out.append('<p class="empty">no capacity figures: hubctl metrics did not report them '
                   "(HubMetricsSourceDown says why)</p>")
    elif not enough or enough[0]["value"][1] != "1":
        days = int(float(history[0]["value"][1]))
        out.append(f'<p class="empty">not enough history yet: size snapshots over {days} '
                   "day(s), a trend needs 30</p>")
    if reaches:
        out.append(table(["volume", "reaches", "on"], [
            [html.escape(r["metric"].get("volume", "")), html.escape(r["metric"].get("percent", "")) + " %",
             f"{_dt.datetime.fromtimestamp(float(r['value'][1]), _dt.timezone.utc):%Y-%m-%d}"]
            for r in sorted(reaches, key=lambda r: (r["metric"].get("volume", ""),
                                                    float(r["metric"].get("percent", 0))))]))
    elif data_growth:
        out.append('<p class="meta">The data volume reaches neither 70 % nor 100 % within '
                   "100 years at its measured rate.</p>")
    if growth:
        out.append(table(["growth of", "per 30 days", "per year"], [
            [html.escape(r["metric"].get("scope", "")), fmt_bytes(30 * float(r["value"][1])),
             fmt_bytes(365 * float(r["value"][1]))]
            for r in sorted(growth, key=lambda r: r["metric"].get("scope", ""))]))
    out.append('<p class="meta">The seed\'s forecast: 9 GB live, 25 GB a year, 125 GB in year 5, '
               "a 500 GB disk.</p>")
    return PAGE.format(body="\n".join(out))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Hub database</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; max-width: 800px; }}
h2 {{ border-bottom: 1px solid #ccc; margin-top: 1.6em; }}
h3 {{ font-size: 1em; margin-bottom: 0.2em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ddd; padding: 2px 8px; text-align: left; }}
.axis {{ font-size: 11px; fill: #555; }} .legend {{ font-size: 13px; }}
.meta, .empty {{ color: #666; }} .o-failed, .o-busy {{ color: #d62728; font-weight: bold; }}
.o-attention {{ color: #ff7f0e; font-weight: bold; }} .o-ok {{ color: #2ca02c; }}
</style></head><body>
{body}
</body></html>
"""


# --------------------------------------------------------------------------- the server

def make_handler(prom: Prometheus, cfg: dict):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "hub-dashboard"

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/healthz":
                return self._send(200, "text/plain", "ok\n")
            if url.path != "/":
                return self._send(404, "text/plain", "not found\n")
            try:
                hours = int(urllib.parse.parse_qs(url.query).get("hours", [DEFAULT_HOURS])[0])
                if not 1 <= hours <= MAX_HOURS:
                    raise ValueError
            except ValueError:
                return self._send(400, "text/plain", f"hours: a whole number, 1 to {MAX_HOURS}\n")
            try:
                page = build_page(prom, cfg, hours)
            except Exception as exc:  # Prometheus down: say so on the page, in a 503
                return self._send(503, "text/html", PAGE.format(
                    body=f"<h1>Hub database</h1><p>Prometheus did not answer: "
                         f"{html.escape(str(exc))}</p>"))
            return self._send(200, "text/html", page)

        def _send(self, code, kind, text):
            data = text.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            sys.stderr.write("hub-dashboard: %s %s\n" % (self.address_string(), fmt % args))

    return Handler


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="The hub's morning page, from Prometheus.")
    ap.add_argument("--config", required=True, help="the JSON configuration the role writes")
    args = ap.parse_args(argv)
    with open(args.config, encoding="utf-8") as fh:
        cfg = json.load(fh)
    prom = Prometheus(cfg["prometheus_url"])
    server = http.server.ThreadingHTTPServer((cfg["listen_address"], int(cfg["port"])),
                                             make_handler(prom, cfg))
    print(f"hub-dashboard: listening on {cfg['listen_address']}:{cfg['port']}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
