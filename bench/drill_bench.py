#!/usr/bin/env python3
"""The DR drill's RTO as the WAL to replay grows, measured by the drill itself in the lab.

repo2 holds a monthly full backup and the WAL since. On a quiet hub archive_timeout (60 s)
closes a segment every minute, so a drill near the end of a month replays up to about 44,640
segments, each fetched from the off-site host by its own `archive-get`. This script writes
--segments WAL segments on the lab hub (each with --rows rows, as a minute of the hub's
allocations would), waits until repo2 holds them, runs the drill (`scripts/lab.sh drill`, a
fresh drill host each time) and reads the phases from its report. Run on the controller, with
the lab up (`make lab`):

    python3 bench/drill_bench.py --segments 300 --out /tmp/drill-bench.json [-- -e var=value ...]

Arguments after `--` go to ansible-playbook (e.g. the drill's archive-get settings). The hub's
scratch table (`drill_bench` in the `postgres` database) is dropped at the end.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HUB = "hub-lab-db"
DRILL = "hub-lab-drill"


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout.strip()


def hub_sql(sql: str) -> str:
    return sh("docker", "exec", HUB, "sudo", "-u", "postgres", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
              "-d", "postgres", "-c", sql)


def repo2() -> dict:
    info = json.loads(sh("docker", "exec", HUB, "sudo", "-u", "postgres", "pgbackrest", "--stanza=hub",
                         "--repo=2", "--output=json", "info"))[0]
    return info


def position(segment: str) -> int:
    return int(segment[8:16], 16) * 256 + int(segment[16:24], 16)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=300, help="WAL segments to write (default 300)")
    parser.add_argument("--rows", type=int, default=70,
                        help="rows of about 300 bytes per segment (default 70: a minute of 100,000 a day)")
    parser.add_argument("--out", help="write the result as JSON here")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.segments < 1:
        parser.error("--segments must be at least 1")
    for name in (HUB, "hub-lab-offsite"):
        if sh("docker", "inspect", "-f", "{{.State.Running}}", name, check=False) != "true":
            print(f"{name} is not running: start the lab first (make lab)", file=sys.stderr)
            return 2

    print(f"==> writing {args.segments} WAL segments on {HUB}, {args.rows} rows each", flush=True)
    hub_sql("CREATE TABLE IF NOT EXISTS drill_bench (pad text)")
    started = time.monotonic()
    # One transaction per segment, as the hub's minutes are; pg_switch_wal closes each.
    hub_sql(f"DO $$ BEGIN FOR i IN 1..{args.segments} LOOP "
            f"INSERT INTO drill_bench SELECT repeat(md5(random()::text), 9) FROM generate_series(1, {args.rows}); "
            "COMMIT; PERFORM pg_switch_wal(); END LOOP; END $$")
    last = hub_sql("SELECT pg_walfile_name(pg_switch_wal())")
    print(f"    written in {time.monotonic() - started:.1f} s; waiting until repo2 holds {last}", flush=True)
    deadline = time.monotonic() + 1800
    while True:
        info = repo2()
        archive_max = max((a.get("max") or "" for a in info.get("archive", [])), default="")
        if archive_max[-24:] >= last:
            break
        if time.monotonic() > deadline:
            print(f"repo2 did not receive {last} within 30 min (it holds {archive_max})", file=sys.stderr)
            return 1
        time.sleep(5)
    backup = sorted(info["backup"], key=lambda b: b["timestamp"]["stop"])[-1]
    to_replay = position(archive_max[-24:]) - position(backup["archive"]["stop"])
    print(f"    repo2's newest backup {backup['label']} ends at {backup['archive']['stop']}; "
          f"archive ends at {archive_max}: {to_replay} segments to replay", flush=True)

    print("==> scripts/lab.sh drill " + " ".join(extra), flush=True)
    marker = ROOT / ".lab" / "drill-bench-started"
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    # The project's virtualenv first, as make puts it (scripts/lab.sh runs ansible-playbook).
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
    drill = subprocess.run([str(ROOT / "scripts" / "lab.sh"), "drill", *extra], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=False)
    reports = [p for p in (ROOT / "reports" / "dr").glob(f"dr-drill-*-{DRILL}.json")
               if p.stat().st_mtime > marker.stat().st_mtime]
    hub_sql("DROP TABLE IF EXISTS drill_bench")
    if not reports:
        print(drill.stdout[-3000:] + drill.stderr[-3000:], file=sys.stderr)
        print("the drill wrote no report", file=sys.stderr)
        return 1
    report = json.loads(sorted(reports)[-1].read_text())
    phases = report["rto"]["phases_s"]
    replay = phases["wal_replay_and_promotion"]
    result = {
        "segments_written": args.segments, "rows_per_segment": args.rows,
        "segments_to_replay": to_replay, "drill_ok": report["ok"], "failures": report["failures"],
        "rto_s": report["rto"]["seconds"], "phases_s": phases,
        "replay_s_per_segment": round(replay / to_replay, 4) if to_replay else None,
        "database_size": report["server"].get("database_size"),
        "extra_args": extra, "report": str(sorted(reports)[-1]),
    }
    if result["replay_s_per_segment"]:
        # A month after the monthly off-site full, one segment a minute.
        result["month_of_segments_replay_min"] = round(44640 * result["replay_s_per_segment"] / 60, 1)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
