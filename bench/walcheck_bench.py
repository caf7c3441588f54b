#!/usr/bin/env python3
"""Time `hubctl wal-check`'s two parts on an archive the size of repo2's: the listing and the
gap arithmetic.

Makes a scratch pgBackRest repository in --workdir holding --segments WAL segment files (empty:
repo-ls lists names, it never reads them) named as pgBackRest names them, in one archive id,
with --holes segments left out. Then, --runs times:

  1. the listing, with the real pgBackRest: `pgbackrest --config=<empty> --repo1-path=<workdir>
     --repo=1 --output=text --recurse repo-ls archive/hub`, the argv hubctl builds but for the
     repository's path (a local repository: repo2's listing over TLS adds the transfer of the
     same text);
  2. hubctl's reading of it (walcheck.held_positions, walcheck.gaps) on that output,

and reports the wall time of each and the holes found (they must equal --holes).

Repo2 keeps twelve monthly fulls and all WAL since the oldest: with archive_timeout = 60 s a hub
that writes at all closes at least a segment a minute, 525,600 in a year:

    python3 bench/walcheck_bench.py --segments 525600 --runs 3

Run on a host with pgBackRest (a lab or scenario hub: `docker cp` it there), with hubctl
importable (this checkout, or /usr/local/lib/hubctl with --hubctl-path). Removes --workdir at the
end unless --keep.
"""

import argparse
import importlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def make_repo(workdir: str, segments: int, holes: int, per_log: int) -> set[int]:
    """The scratch repository's archive; returns the positions left out."""
    left_out = set(range(segments // 2, segments // 2 + holes))
    base = os.path.join(workdir, "archive", "hub", "15-1")
    sha = "0" * 40
    made_dirs = set()
    for pos in range(segments):
        if pos in left_out:
            continue
        log, seg = divmod(pos, per_log)
        directory = os.path.join(base, f"00000001{log:08X}")
        if directory not in made_dirs:
            os.makedirs(directory, exist_ok=True)
            made_dirs.add(directory)
        open(os.path.join(directory, f"00000001{log:08X}{seg:08X}-{sha}.lz4"), "wb").close()
    with open(os.path.join(workdir, "archive", "hub", "archive.info"), "w", encoding="utf-8") as fh:
        fh.write("[db]\n")
    return left_out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=525_600)
    ap.add_argument("--holes", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--hubctl-path", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, args.hubctl_path)
    walcheck = importlib.import_module("hubctl.walcheck")

    per_log = walcheck.segments_per_log(16)
    workdir = args.workdir or tempfile.mkdtemp(prefix="walcheck-bench-")
    os.makedirs(workdir, exist_ok=True)
    config = os.path.join(workdir, "empty.conf")
    open(config, "w").close()
    try:
        t = time.monotonic()
        left_out = make_repo(workdir, args.segments, args.holes, per_log)
        print(f"made {args.segments - len(left_out)} segment files ({len(left_out)} left out) "
              f"in {time.monotonic() - t:.1f} s", flush=True)
        # The argv hubctl builds, with the scratch repository instead of the configured one.
        argv = walcheck.list_argv("hub", 1)[4:]
        argv[1:1] = [f"--config={config}", f"--repo1-path={workdir}", "--log-level-console=warn"]
        p = {"archive_id": "15-1", "newest_start": walcheck.segment_name(0, per_log),
             "newest_stop": walcheck.segment_name(0, per_log),
             "oldest_start": walcheck.segment_name(0, per_log), "newest_label": "bench"}
        listed, judged = [], []
        for run in range(1, args.runs + 1):
            t = time.monotonic()
            proc = subprocess.run(argv, capture_output=True, text=True, check=True)
            listed.append(time.monotonic() - t)
            t = time.monotonic()
            held = walcheck.held_positions(proc.stdout, "15-1", per_log)
            found = walcheck.gaps(p, held, per_log)
            judged.append(time.monotonic() - t)
            assert found["newest_backup"] == sorted(left_out), found["newest_backup"][:5]
            print(f"run {run}: repo-ls {listed[-1]:.2f} s ({len(proc.stdout) / 2**20:.1f} MiB of text, "
                  f"{len(held)} segments), hubctl's reading {judged[-1]:.2f} s, "
                  f"{len(found['newest_backup'])} missing", flush=True)
        print(f"median: repo-ls {statistics.median(listed):.2f} s, reading {statistics.median(judged):.2f} s")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
