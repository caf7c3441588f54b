#!/usr/bin/env python3
"""How far behind the hub each pgBackRest repository's WAL archive runs: the RPO of a restore.

A committed row is safe in a repository once the WAL segment that holds its commit is archived
there. For each sample this script commits a row, notes the commit's WAL position, and polls
`pgbackrest info` until each repository's newest archived segment is at least the one holding
it. It does so in two conditions:

  quiet:  no other writes; only archive_timeout closes the segment (the worst case of a quiet
          hour: up to archive_timeout plus the asynchronous push)
  busy:   a writer fills WAL continuously (a 16 MB segment every few seconds); segments close
          because they are full

Run on the hub, as root (it calls psql and pgbackrest as postgres):

    python3 bench/rpo_bench.py --samples 5 --out /tmp/rpo.json

Writes into a scratch table in the `postgres` database, which it drops at the end.
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

STANZA = "hub"


def psql(sql: str) -> str:
    out = subprocess.run(["sudo", "-u", "postgres", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1",
                          "-d", "postgres", "-c", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def archived(stanza: str) -> dict[int, str]:
    """The newest archived segment in each repository."""
    out = subprocess.run(["sudo", "-u", "postgres", "pgbackrest", f"--stanza={stanza}",
                          "--output=json", "info"], capture_output=True, text=True, check=True)
    newest = {}
    for archive in json.loads(out.stdout)[0].get("archive", []):
        repo = archive["database"]["repo-key"]
        newest[repo] = max(newest.get(repo, ""), (archive.get("max") or "")[-24:])
    return newest


def sample(stanza: str, timeout: float) -> dict[int, float]:
    """Commit a row and return the seconds until each repository holds its WAL segment."""
    segment = psql("INSERT INTO rpo_bench VALUES (clock_timestamp()) "
                   "RETURNING pg_walfile_name(pg_current_wal_insert_lsn())")
    start = time.monotonic()
    waited: dict[int, float] = {}
    while time.monotonic() - start < timeout:
        for repo, newest in archived(stanza).items():
            if repo not in waited and newest >= segment:
                waited[repo] = round(time.monotonic() - start, 1)
        if len(waited) == 2:
            break
        time.sleep(0.5)
    return waited


def writer(stop: threading.Event) -> None:
    """Keep WAL flowing: about 4 MB per statement (short random strings: nothing for TOAST to
    compress, which a repeated string would be)."""
    while not stop.is_set():
        psql("INSERT INTO rpo_bench_load SELECT md5(random()::text) "
             "FROM generate_series(1, 50000); TRUNCATE rpo_bench_load")


def summary(name: str, samples: list[dict[int, float]], timeout: float) -> dict:
    result = {"condition": name, "samples": samples}
    for repo in (1, 2):
        seconds = [s.get(repo, timeout) for s in samples]
        result[f"repo{repo}_median_s"] = statistics.median(seconds)
        result[f"repo{repo}_max_s"] = max(seconds)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="rows per condition (default 5)")
    parser.add_argument("--stanza", default=STANZA)
    parser.add_argument("--timeout", type=float, default=300, help="give up on a sample after this")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    timeout_setting = psql("SHOW archive_timeout")
    print(f"archive_timeout={timeout_setting} archive_command={psql('SHOW archive_command')!r}",
          flush=True)
    psql("CREATE TABLE IF NOT EXISTS rpo_bench (at timestamptz); "
         "CREATE TABLE IF NOT EXISTS rpo_bench_load (pad text)")
    results = []
    try:
        quiet = []
        for i in range(args.samples):
            quiet.append(sample(args.stanza, args.timeout))
            print(f"quiet sample {i + 1}/{args.samples}: seconds until archived {quiet[-1]}", flush=True)
        results.append(summary("quiet", quiet, args.timeout))

        stop = threading.Event()
        load = threading.Thread(target=writer, args=(stop,), daemon=True)
        load.start()
        busy = []
        try:
            for i in range(args.samples):
                busy.append(sample(args.stanza, args.timeout))
                print(f"busy sample {i + 1}/{args.samples}: seconds until archived {busy[-1]}", flush=True)
        finally:
            stop.set()
            load.join()
        results.append(summary("busy", busy, args.timeout))
    finally:
        psql("DROP TABLE IF EXISTS rpo_bench; DROP TABLE IF EXISTS rpo_bench_load")

    print("\n| condition | repo1 median s | repo1 max s | repo2 median s | repo2 max s |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['condition']} | {r['repo1_median_s']} | {r['repo1_max_s']} | "
              f"{r['repo2_median_s']} | {r['repo2_max_s']} |")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"archive_timeout": timeout_setting, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
