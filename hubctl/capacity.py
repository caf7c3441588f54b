"""The capacity report (seed section 7): the daily size snapshot and `hubctl capacity`.

    hubctl capacity [--json] [--days N]

The daily job's last step writes one row per table and tier into hub_size_snapshots
(migration 0009), plus pg_wal, the whole database and each configured volume ([capacity]
volumes). A rerun on the same day replaces that day's rows. Prometheus keeps 15 days; the
report needs 30, so the history lives in the database.

`hubctl capacity` fits a straight line (least squares, bytes against day) to each series over
the --days days before the newest snapshot (default 30; a trend needs snapshots spanning them,
on at least two thirds of the days) and reports the growth per table and in total,
and the dates at which the data volume's fitted use reaches 70 % and 100 % of its size, beside
the seed's forecast. With less than that much history it says so and reports only the sizes of
the newest snapshot: a fit over a week would promise a date it cannot know. Read-only: no lock,
no run record.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import sys

from hubctl import db, jobs, sizes
from hubctl.jobs import DRY_RUN, Job

DEFAULT_DAYS = 30
# Fewer days than this are no trend at all, whatever --days says.
MIN_DAYS = 14
# The seed's disk threshold (70 %), also the disk alert's default, and a full volume.
THRESHOLDS = (70, 100)
# A date further away than this is reported as "not within 100 years".
HORIZON_DAYS = 100 * 365
GB = 10 ** 9
# The seed's forecast (section 7), in its own units (GB).
SEED = {"live_gb": 9, "growth_gb_per_year": 25, "year5_gb": 125, "disk_gb": 500}
DATA_VOLUME = "data"
# The report's "in total" lines, in order (indexes: of the live and archive tiers).
TOTALS = ("live", "archive", "cold", "indexes", "wal", "database")


# --------------------------------------------------------------------------- the snapshot

def read_snapshot(cur, volumes) -> list[tuple]:
    """Rows (subject, tier, bytes, index_bytes, rows, volume_bytes) of the hub as it is now."""
    _tables, tiers = sizes.read_tables(cur)
    out = [(s.table, s.tier, s.bytes, s.index_bytes, s.rows, None) for s in tiers]
    cold = {led.table: led for led in sizes.read_ledger(cur) if led.state == "cold"}
    for table in sorted({s.table for s in tiers}):
        led = cold.get(table)
        out.append((table, "cold", led.cold_bytes if led else 0, None, led.rows if led else 0,
                    None))
    cur.execute("""
        SELECT (SELECT coalesce(sum(size), 0)::bigint FROM pg_catalog.pg_ls_waldir()),
               pg_catalog.pg_database_size(current_database())""")
    wal, database = cur.fetchone()
    out.append(("pg_wal", "wal", int(wal), None, None, None))
    out.append(("database", "database", int(database), None, None, None))
    for name, path in volumes:
        st = os.statvfs(path)
        size = st.f_blocks * st.f_frsize
        # Used as df and the disk alert count it: what unprivileged users can no longer have.
        out.append((name, "volume", size - st.f_bavail * st.f_frsize, None, None, size))
    return out


UPSERT = """
    INSERT INTO public.hub_size_snapshots AS s
        (taken_on, subject, tier, bytes, index_bytes, rows, volume_bytes)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (taken_on, subject, tier) DO UPDATE SET
        bytes = EXCLUDED.bytes, index_bytes = EXCLUDED.index_bytes, rows = EXCLUDED.rows,
        volume_bytes = EXCLUDED.volume_bytes, taken_at = DEFAULT"""


def snapshot(job: Job) -> None:
    """The daily job's last step: today's sizes into hub_size_snapshots, in one transaction.
    A configured volume whose path does not exist is left out and needs attention; the data
    volume, which the projection is about, missing fails the step."""
    volumes = job.cfg.capacity.volumes
    with job.step("capacity", date=job.today) as st:
        present = [(n, p) for n, p in volumes if os.path.isdir(p)]
        missing = [f"{n}={p}" for n, p in volumes if not os.path.isdir(p)]
        if any(n == DATA_VOLUME for n, _ in volumes) and DATA_VOLUME not in dict(present):
            raise jobs.JobAbort(f"the data volume's path {dict(volumes)[DATA_VOLUME]} does not "
                                "exist ([capacity] volumes)")
        with db.transaction(job.conn) as cur:
            # As hub_maint for this transaction, not the owner the job's connection SETs:
            # pg_ls_waldir needs pg_monitor, which only hub_maint has (migration 0009 grants it
            # the snapshot table).
            cur.execute("SET LOCAL ROLE NONE")
            rows = read_snapshot(cur, present)
            if not job.dry_run:
                for row in rows:
                    cur.execute(UPSERT, (job.today, *row))
        total = sum(r[2] for r in rows if r[1] in sizes.TIERS + ("cold",))
        st.set(tables_bytes=total)
        if missing:
            st.set(missing_volumes=",".join(missing))
            st.need_attention("capacity: volume path(s) not found, left out of the size "
                              f"snapshot: {', '.join(missing)}")
        if job.dry_run:
            st.rows = 0
            st.outcome = DRY_RUN if st.outcome == jobs.OK else st.outcome
        else:
            st.rows = len(rows)


# --------------------------------------------------------------------------- the fit

@dataclasses.dataclass(frozen=True)
class Fit:
    """A least-squares line through (day, bytes): bytes = intercept + slope * day.ordinal."""
    slope: float        # bytes per day
    intercept: float
    points: int

    def at(self, day: _dt.date) -> float:
        return self.intercept + self.slope * day.toordinal()

    def reaches(self, target: float, newest: _dt.date, now_bytes: float):
        """The first day the line reaches target: newest if already there, None if it never
        will (flat or shrinking) or only after HORIZON_DAYS."""
        if now_bytes >= target:
            return newest
        if self.slope <= 0:
            return None
        day = math.ceil((target - self.intercept) / self.slope)
        day = max(day, newest.toordinal())
        if day - newest.toordinal() > HORIZON_DAYS:
            return None
        return _dt.date.fromordinal(day)


def fit(points) -> Fit | None:
    """points: [(date, bytes)]. None for fewer than two distinct days (no line)."""
    xs = [d.toordinal() for d, _ in points]
    if len(set(xs)) < 2:
        return None
    ys = [float(b) for _, b in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return Fit(slope=slope, intercept=my - slope * mx, points=n)


# --------------------------------------------------------------------------- the report

WINDOW_SQL = """
    SELECT taken_on, subject, tier, bytes, index_bytes, volume_bytes
    FROM public.hub_size_snapshots
    WHERE taken_on <= %(today)s
      AND taken_on >= (SELECT max(taken_on) FROM public.hub_size_snapshots
                       WHERE taken_on <= %(today)s) - %(days)s
    ORDER BY taken_on, subject, tier"""


def read_window(cur, today: _dt.date, days: int) -> list[tuple]:
    cur.execute(WINDOW_SQL, {"today": today, "days": days})
    return [(d, s, t, int(b), None if i is None else int(i), None if v is None else int(v))
            for d, s, t, b, i, v in cur.fetchall()]


def _series(rows) -> dict:
    """{key: [(date, bytes)]} for every table tier, each total and each volume.

    A total counts only the days that have every member the newest day has: a table that
    joins would otherwise show up as growth (its whole size in one day)."""
    out: dict = {}
    members: dict = {}

    def add(key, day, value, member=None):
        out.setdefault(key, {}).setdefault(day, 0)
        out[key][day] += value
        members.setdefault(key, {}).setdefault(day, set()).add(member)

    for day, subject, tier, nbytes, index_bytes, _vol in rows:
        if tier in ("live", "archive", "cold"):
            add(("table", subject, tier), day, nbytes)
            add(("total", tier), day, nbytes, subject)
            if index_bytes is not None:
                add(("total", "indexes"), day, index_bytes, (subject, tier))
        elif tier in ("wal", "database"):
            add(("total", tier), day, nbytes)
        elif tier == "volume":
            add(("volume", subject), day, nbytes)
    series = {}
    for key, days in out.items():
        newest = members[key][max(days)]
        series[key] = sorted((d, v) for d, v in days.items() if newest <= members[key][d])
    return series


def min_snapshots(days: int) -> int:
    """Snapshots a trend needs over `days`: two thirds of the days (a line through two
    points a month apart, with the job broken in between, is no trend)."""
    return math.ceil(2 * days / 3)


def _enough(points, days: int) -> bool:
    """A series is a trend when its own snapshots span the window and are most of its days
    (a table or volume that appeared last week has no month of history, whatever the others
    have)."""
    return ((points[-1][0] - points[0][0]).days >= days - 1
            and len(points) >= min_snapshots(days))


def _growth(points, days: int) -> dict:
    """Now (the newest snapshot) and, with enough history, the fitted growth."""
    entry = {"bytes": points[-1][1], "growth_bytes_per_day": None,
             "growth_bytes_per_30_days": None, "growth_bytes_per_year": None}
    f = fit(points) if _enough(points, days) else None
    if f is not None:
        entry.update(growth_bytes_per_day=round(f.slope),
                     growth_bytes_per_30_days=round(f.slope * 30),
                     growth_bytes_per_year=round(f.slope * 365))
    return entry


def build(rows, today: _dt.date, days: int = DEFAULT_DAYS) -> dict:
    """The report from the window's snapshot rows (read_window). Works from the first day: no
    snapshot, or less than `days` of them, gives sizes without growth and says why."""
    report = {"today": today.isoformat(), "window_days": days, "seed": dict(SEED),
              "enough_history": False, "history": None, "tables": [], "totals": {},
              "volumes": {}}
    if not rows:
        report["message"] = ("no size snapshot yet: the daily job (hubctl daily) writes the "
                             "first one")
        return report
    first, newest = rows[0][0], rows[-1][0]
    covered = (newest - first).days
    snapshots = len({r[0] for r in rows})
    # The window as a whole; each series is checked again (_enough).
    enough = covered >= days - 1 and snapshots >= min_snapshots(days)
    report["history"] = {"first": first.isoformat(), "newest": newest.isoformat(),
                         "days": covered + 1, "snapshots": snapshots}
    report["enough_history"] = enough
    if not enough and covered < days - 1:
        report["message"] = (f"not enough history yet: {covered + 1} day(s) of snapshots "
                             f"({first} .. {newest}), {days} needed for a trend; growth and "
                             f"dates from {first + _dt.timedelta(days=days - 1)}")
    elif not enough:
        report["message"] = (f"not enough history yet: {snapshots} snapshot(s) in the last "
                             f"{covered + 1} days, {min_snapshots(days)} needed for a trend: "
                             "has the daily job been failing?")
    if (today - newest).days > 1:
        report["stale"] = (f"the newest snapshot is from {newest}, {(today - newest).days} days "
                           "ago: is the daily job running?")
    series = _series(rows)
    order = {"live": 0, "archive": 1, "cold": 2}
    for key in sorted((k for k in series if k[0] == "table"), key=lambda k: (k[1], order[k[2]])):
        report["tables"].append({"table": key[1], "tier": key[2],
                                 **_growth(series[key], days)})
    for name in TOTALS:
        if ("total", name) in series:
            report["totals"][name] = _growth(series[("total", name)], days)
    volume_size = {r[1]: r[5] for r in rows if r[2] == "volume" and r[0] == newest}
    for key in sorted(k for k in series if k[0] == "volume"):
        name, points = key[1], series[key]
        entry = _growth(points, days)
        size = volume_size.get(name)
        entry["volume_bytes"] = size
        entry["used_percent"] = round(100 * points[-1][1] / size, 1) if size else None
        f = fit(points) if _enough(points, days) else None
        if f is not None and size:
            entry["reaches"] = {}
            for pct in THRESHOLDS:
                day = f.reaches(size * pct / 100, newest, points[-1][1])
                entry["reaches"][str(pct)] = day.isoformat() if day else None
        report["volumes"][name] = entry
    report["seed_comparison"] = _seed_comparison(report)
    return report


def _seed_comparison(report: dict) -> dict:
    """The measured figures in the seed's terms: live now, a year's growth of the hub's data
    (live, archive and cold files), five years at that rate, the data volume's size."""
    totals = report["totals"]
    live = totals.get("live", {}).get("bytes")
    data = [totals[t] for t in ("live", "archive", "cold") if t in totals]
    per_year = (sum(t["growth_bytes_per_year"] for t in data)
                if data and all(t["growth_bytes_per_year"] is not None for t in data) else None)
    now = sum(t["bytes"] for t in data) if data else None
    volume = report["volumes"].get(DATA_VOLUME, {})
    return {"live_gb": None if live is None else round(live / GB, 2),
            "growth_gb_per_year": None if per_year is None else round(per_year / GB, 2),
            "year5_gb": (None if per_year is None or now is None
                         else round((now + 5 * per_year) / GB, 2)),
            "disk_gb": (None if not volume.get("volume_bytes")
                        else round(volume["volume_bytes"] / GB, 1))}


def _size(value) -> str:
    """Bytes in GB (10^9) from 1 GB up, in MB below: a lab's megabytes are not all 0.00 GB."""
    if value is None:
        return "-"
    v = abs(value)
    return f"{v / GB:.2f} GB" if v >= GB else f"{v / 10 ** 6:.1f} MB"


def _signed(value) -> str:
    return "-" if value is None else ("-" if value < 0 else "+") + _size(value)


def to_text(report: dict) -> str:
    lines = [f"Capacity of the hub on {report['today']} (hubctl capacity; GB are 10^9 bytes, "
             "MB 10^6)"]
    h = report["history"]
    if h:
        lines.append(f"Snapshots: {h['first']} .. {h['newest']}, {h['days']} day(s), "
                     f"{h['snapshots']} snapshot(s); trend over the last {report['window_days']} "
                     "days")
    if report.get("message"):
        lines.append(report["message"])
    if report.get("stale"):
        lines.append("WARNING: " + report["stale"])
    if not h:
        return "\n".join(lines) + "\n"
    row = "  {:<40} {:>11} {:>12} {:>12}"
    lines += ["", row.format("", "now", "growth/30 d", "growth/year")]
    for t in report["tables"]:
        lines.append(row.format(f"{t['table']} ({t['tier']})", _size(t["bytes"]),
                                _signed(t["growth_bytes_per_30_days"]),
                                _signed(t["growth_bytes_per_year"])))
    lines.append("")
    labels = {"live": "total live", "archive": "total archive", "cold": "total cold files",
              "indexes": "total indexes (live and archive)", "wal": "pg_wal",
              "database": "the whole database"}
    for name, t in report["totals"].items():
        lines.append(row.format(labels[name], _size(t["bytes"]),
                                _signed(t["growth_bytes_per_30_days"]),
                                _signed(t["growth_bytes_per_year"])))
    for name, v in report["volumes"].items():
        lines.append(row.format(f"volume {name} (used)", _size(v["bytes"]),
                                _signed(v["growth_bytes_per_30_days"]),
                                _signed(v["growth_bytes_per_year"])))
    data = report["volumes"].get(DATA_VOLUME)
    lines.append("")
    if data and data.get("volume_bytes"):
        lines.append(f"Data volume: {_size(data['bytes'])} used of {_size(data['volume_bytes'])} "
                     f"({data['used_percent']} %)")
        if "reaches" in data:
            for pct, day in data["reaches"].items():
                when = day or "not within 100 years at this rate (or not growing)"
                lines.append(f"  reaches {pct} %: {when}")
        else:
            lines.append("  projected dates: not enough history yet")
    else:
        lines.append(f"Data volume: no snapshot (is '{DATA_VOLUME}' in [capacity] volumes?)")
    s, m = report["seed"], report["seed_comparison"]

    def measured(v):
        return "not enough history yet" if v is None else f"{v} GB"
    lines += ["", "The seed's forecast beside what was measured:",
              f"  live data:          seed {s['live_gb']} GB, now {measured(m['live_gb'])}",
              f"  growth a year:      seed {s['growth_gb_per_year']} GB, measured "
              f"{measured(m['growth_gb_per_year'])}",
              f"  in year 5:          seed {s['year5_gb']} GB, at this rate "
              f"{measured(m['year5_gb'])}",
              f"  disk:               seed {s['disk_gb']} GB, data volume "
              f"{'-' if m['disk_gb'] is None else str(m['disk_gb']) + ' GB'}"]
    return "\n".join(lines) + "\n"


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


# --------------------------------------------------------------------------- the commands

def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, metavar="N",
                   help=f"fit the trend over the last N days of snapshots (default "
                        f"{DEFAULT_DAYS}, at least {MIN_DAYS})")


def validate(args, _today) -> None:
    if args.days < MIN_DAYS:
        raise ValueError(f"--days must be at least {MIN_DAYS} (a shorter trend predicts "
                         "nothing)")


def run(args, cfg, today: _dt.date, connect=db.connect) -> int:
    log = jobs.Logger("capacity")
    try:
        conn = connect(cfg, "capacity", readonly=True)
        try:
            with db.transaction(conn) as cur:
                rows = read_window(cur, today, args.days)
        finally:
            conn.close()
    except Exception as exc:
        log.line("capacity", outcome=jobs.FAILED, error=db.describe_error(exc)[0])
        return jobs.EXIT_FAILED
    report = build(rows, today, args.days)
    sys.stdout.write(to_json(report) + "\n" if args.json else to_text(report))
    sys.stdout.flush()
    return jobs.EXIT_OK


def collect_metrics(m, cur, today: _dt.date, days: int = DEFAULT_DAYS) -> None:
    """The report's figures for `hubctl metrics` (the dashboard)."""
    report = build(read_window(cur, today, days), today, days)
    m.gauge("hub_capacity_history_days", "days from the window's first size snapshot to its "
            "newest, both counted",
            report["history"]["days"] if report["history"] else 0)
    m.gauge("hub_capacity_enough_history", "1 when the capacity window holds enough days for "
            "a trend", report["enough_history"])
    for name, t in report["totals"].items():
        if t["growth_bytes_per_day"] is not None:
            m.gauge("hub_capacity_growth_bytes_per_day", "fitted growth over the capacity "
                    "window", t["growth_bytes_per_day"], scope=name)
    for name, v in report["volumes"].items():
        if v["growth_bytes_per_day"] is not None:
            m.gauge("hub_capacity_growth_bytes_per_day", "fitted growth over the capacity "
                    "window", v["growth_bytes_per_day"], scope=f"volume_{name}")
        for pct, day in (v.get("reaches") or {}).items():
            if day is not None:
                stamp = _dt.datetime.combine(_dt.date.fromisoformat(day), _dt.time(),
                                             _dt.timezone.utc).timestamp()
                m.gauge("hub_capacity_volume_reaches_timestamp_seconds", "the day the "
                        "volume's fitted use reaches percent of its size", stamp, volume=name,
                        percent=pct)
