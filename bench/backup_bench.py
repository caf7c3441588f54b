#!/usr/bin/env python3
"""Measure pgBackRest full-backup and restore throughput on a generated hub database.

Builds a scratch PostgreSQL cluster of its own (initdb --data-checksums in --workdir, port 5499,
Unix socket in that directory only, no TCP), fills it with about --gb GB of allocations shaped
like v1_hub_work_allocations (files/sql/migrations/0001_live_tables.sql: monthly partitions, its
primary key, partial and (work_date, status) indexes), then for each compress-type (--compress,
default lz4 and zst at pgBackRest's default levels 1 and 3; zst:6 picks a level) and process-max
(--process-max, default 1 and 2), optionally encrypted with aes-256-cbc like repo2 (--cipher):

  - a fresh stanza in a fresh repository (/var/tmp/bench-repo-<combo>), with a config file of its
    own passed with --config=; WAL is archived for real (archive_command = pgbackrest archive-push)
    so the backup is consistent and archive-check stays on;
  - a full backup with --start-fast, timed wall-clock; the repository's backup set is measured
    (pgbackrest info and du) against the database size;
  - a restore into a fresh, empty directory (no --delta), timed wall-clock; then (unless
    --no-verify) the restored cluster is started on port 5498 and its row count checked.

Caches are warm (the database fits in RAM and page caches cannot be dropped in a container).
Prints a Markdown table and an extrapolation to 125 GB (the seed's year-5 size): restore from
repo1 at the measured rate, and from an off-site repo2 as max(transfer of the compressed bytes over
the stated links, local restore time). Writes everything to --out as JSON. Removes its cluster,
--workdir and every /var/tmp/bench-repo-* at the end unless --keep (restore directories are
always removed). Reuse a cluster kept earlier with --reuse (skips the minutes of data generation).
With --amcheck it also times pg_amcheck on the database as the DR drill runs it (its verification
phase); --amcheck --no-backups measures that alone.

Run as root on a Debian host or lab container with postgresql-17 and pgbackrest installed:

    docker exec bench-bk python3 /hub/bench/backup_bench.py --gb 3 --out /tmp/backup-bench.json

(bench-bk: a hub-systemd:debian13 container with the project mounted on /hub (the tables come
from its migration 0001) and `apt-get install -y postgresql-17 pgbackrest` done in it.)
"""

import argparse
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import time

PORT = 5499
VERIFY_PORT = 5498
DB = "hub_bench"
STANZA = "bench"
TABLE = "v1_hub_work_allocations"
TARGET_GB = 125
ROWS_PER_BATCH = 500_000
# Rough bytes per row, heap plus indexes; only used to spread rows over days. The loop stops on
# the measured database size, not on this estimate.
EST_BYTES_PER_ROW = 190

# The live tables exactly as the hub has them (columns, checks, primary key, indexes), from the
# migration itself, plus a default partition for rows outside the months the generator adds.
MIGRATION_0001 = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                              "files", "sql", "migrations", "0001_live_tables.sql")

# 30 x 40 x 25 = 30000 distinct keywords that read like search phrases; 1000 clients.
WORDS_A = ("cheap buy best new used red blue fast small large online local free top "
           "organic vintage modern classic mini pro smart eco wireless portable digital "
           "custom premium budget luxury handmade").split()
WORDS_B = ("shoes phone laptop bike chair table lamp camera watch jacket tent guitar printer "
           "sofa kettle drill mattress backpack speaker monitor router scooter blender heater "
           "fridge oven helmet charger keyboard mouse headphones tablet stroller desk mirror "
           "rug curtain pillow blanket").split()
WORDS_C = ("near me|for sale|review|price|2025|deals|repair|rental|uk|de|fr|berlin|london|"
           "paris|amazon|ebay|wholesale|discount|sale|outlet|store|shop|delivery|warranty|"
           "manual").split("|")

# One batch of rows, numbered lo..hi-1. Row i belongs to day start + i / rows_per_day, its
# allocated_at moves through that day in order (as the application inserts), and most rows are
# finished (completed with an execution time, or expired); a few are still allocated.
FILL = f"""
INSERT INTO {TABLE} (allocation_key, allocated_at, finished_at, work_date, execution_time_ms,
                     proxy_id, status, client_id, keyword)
SELECT gen_random_uuid(), at, CASE WHEN st <> 'allocated' THEN at + ms * interval '1 ms' END,
       d, CASE WHEN st = 'completed' THEN ms END, 1 + floor(random() * 500)::int, st,
       'client-' || lpad(floor(random() * 1000)::int::text, 4, '0'),
       a[1 + mod(k, {len(WORDS_A)})] || ' ' || b[1 + mod(k / {len(WORDS_A)}, {len(WORDS_B)})] || ' '
           || c[1 + mod(k / {len(WORDS_A) * len(WORDS_B)}, {len(WORDS_C)})]
FROM generate_series(%(lo)s, %(hi)s - 1) i,
     LATERAL (SELECT date %(start)s + (i / %(rpd)s)::int AS d,
                     floor(random() * 30000)::int AS k,
                     (random() ^ 3 * 60000)::int AS ms,
                     random() AS r) v,
     LATERAL (SELECT d + ((i %% %(rpd)s)::float8 / %(rpd)s) * interval '1 day'
                       + random() * interval '1 second' AS at,
                     CASE WHEN r < 0.90 THEN 'completed' WHEN r < 0.98 THEN 'expired'
                          ELSE 'allocated' END AS st) t,
     (SELECT %(a)s::text[] AS a, %(b)s::text[] AS b, %(c)s::text[] AS c) w
"""


def die(msg):
    print(f"backup_bench: error: {msg}", file=sys.stderr)
    sys.exit(1)


def log(msg):
    print(f"# {time.strftime('%H:%M:%S')} {msg}", flush=True)


def as_postgres(cmd, check=True, capture=False, **kw):
    """Run cmd as the postgres OS user."""
    res = subprocess.run(["runuser", "-u", "postgres", "--"] + cmd, text=True,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None, **kw)
    if check and res.returncode != 0:
        detail = (res.stderr or "").strip() if capture else ""
        die(f"command failed ({res.returncode}): {' '.join(cmd)}\n{detail}")
    return res


class Cluster:
    """A scratch cluster: data directory and Unix socket under workdir, nothing on TCP."""

    def __init__(self, bindir, datadir, sockdir, port):
        self.bindir, self.datadir, self.sockdir, self.port = bindir, datadir, sockdir, port

    def bin(self, name):
        return os.path.join(self.bindir, name)

    def sql(self, query, db=DB, params=None):
        """Run one statement with psql; return its rows as lists of strings."""
        cmd = [self.bin("psql"), "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
               "-h", self.sockdir, "-p", str(self.port), "-d", db]
        for key, value in (params or {}).items():
            cmd += ["-v", f"{key}={value}"]
        res = as_postgres(cmd, capture=True, input=query)
        return [line.split("\t") for line in res.stdout.splitlines() if line]

    def start(self, extra=""):
        opts = f"-c port={self.port} -c unix_socket_directories='{self.sockdir}' -c listen_addresses='' {extra}"
        as_postgres([self.bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "1800", "-o", opts,
                     "-l", self.datadir + ".log", "start"], capture=True)

    def stop(self):
        if os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
            as_postgres([self.bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "600", "-m", "fast",
                         "stop"], capture=True, check=False)


def sq(text):
    """A SQL literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_array(words):
    return "ARRAY[" + ",".join(sq(w) for w in words) + "]"


def find_bindir(version):
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if version:
        dirs = [d for d in dirs if d.split("/")[-2] == str(version)]
    dirs = [d for d in dirs if os.path.exists(os.path.join(d, "initdb"))]
    if not dirs:
        die(f"no PostgreSQL {version or ''} server binaries under /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql-17)")
    return dirs[-1]


def du(path):
    if not os.path.exists(path):
        return 0
    return int(subprocess.run(["du", "-sb", path], check=True, text=True,
                              stdout=subprocess.PIPE).stdout.split()[0])


def make_dir(path):
    os.makedirs(path, mode=0o700, exist_ok=True)
    pg = pwd.getpwnam("postgres")
    os.chown(path, pg.pw_uid, pg.pw_gid)


def create_cluster(cl, args):
    log(f"initdb --data-checksums in {cl.datadir}")
    make_dir(cl.sockdir)
    as_postgres([cl.bin("initdb"), "--data-checksums", "-U", "postgres", "--auth=peer",
                 "-E", "UTF8", "--locale=C.UTF-8", "-D", cl.datadir], capture=True)
    with open(os.path.join(cl.datadir, "postgresql.conf"), "a") as f:
        # Fast bulk load; archiving is switched on only after the data is in (see configure_archiving).
        f.write("\n# backup_bench\nshared_buffers = 512MB\nmax_wal_size = 4GB\n"
                "checkpoint_timeout = 30min\nsynchronous_commit = off\n"
                "maintenance_work_mem = 512MB\nwal_level = replica\nautovacuum = off\n")
    cl.start()
    cl.sql(f"CREATE DATABASE {DB}", db="postgres")
    with open(MIGRATION_0001, encoding="utf-8") as f:
        cl.sql(f.read() + f"\nCREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT;\n")


def generate(cl, args):
    """Insert batches until the database reaches --gb; days are spread over --days."""
    target = int(args.gb * 1e9)
    est_rows = target // EST_BYTES_PER_ROW
    rpd = max(1, est_rows // args.days)
    start = args.start_date
    # Monthly partitions covering the days (plus spare months; overflow lands in the default).
    cl.sql(f"""
        DO $$ DECLARE m date; BEGIN
          FOR m IN SELECT generate_series(date_trunc('month', date '{start}'),
                                          date '{start}' + {args.days + 62}, interval '1 month')::date LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF {TABLE} FOR VALUES FROM (%L) TO (%L)',
                           '{TABLE}_p' || to_char(m, 'YYYY_MM'), m, (m + interval '1 month')::date);
          END LOOP; END $$""")
    fill = FILL % {"lo": ":lo", "hi": ":hi", "start": sq(start), "rpd": rpd,
                   "a": sql_array(WORDS_A), "b": sql_array(WORDS_B), "c": sql_array(WORDS_C)}
    log(f"generating ~{args.gb} GB: about {est_rows:,} rows, {rpd:,} per day from {start}, "
        f"{ROWS_PER_BATCH:,} rows per batch")
    t0, lo, size = time.monotonic(), 0, 0
    while size < target:
        hi = lo + ROWS_PER_BATCH
        cl.sql(fill, params={"lo": lo, "hi": hi})
        lo = hi
        size = int(cl.sql(f"SELECT pg_database_size('{DB}')")[0][0])
        elapsed = time.monotonic() - t0
        eta = elapsed / size * (target - size) if size < target else 0
        log(f"  {lo:>12,} rows  {size / 1e9:6.2f} GB of {args.gb} GB  {elapsed:6.0f} s  "
            f"(eta {eta / 60:.1f} min)")
    log("VACUUM ANALYZE (sets hint bits and the visibility map, as on a settled production table)")
    cl.sql(f"VACUUM (ANALYZE) {TABLE}")
    cl.sql("CHECKPOINT")
    return {"rows": lo, "rows_per_day": rpd, "generate_seconds": round(time.monotonic() - t0, 1)}


def configure_archiving(cl, conf_link):
    """archive_command pushes to whichever repository conf_link points at (the current combo)."""
    cmd = f"pgbackrest --config={conf_link} --stanza={STANZA} archive-push %p"
    cl.sql("ALTER SYSTEM SET archive_mode = on", db="postgres")
    cl.sql(f"ALTER SYSTEM SET archive_command = {sq(cmd)}", db="postgres")
    cl.stop()
    cl.start()


def write_config(path, repo, combo, cl, workdir):
    level = f"compress-level={combo['level']}\n" if combo["level"] is not None else ""
    # Encrypted like the project's repo2 (aes-256-cbc); the passphrase only lives for this run.
    cipher = (f"repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={os.urandom(24).hex()}\n"
              if combo["cipher"] else "")
    with open(path, "w") as f:
        f.write(f"""[global]
repo1-path={repo}
repo1-retention-full=1
{cipher}compress-type={combo['compress']}
{level}process-max={combo['pmax']}
start-fast=y
log-path={workdir}/log
lock-path={workdir}/lock
spool-path={workdir}/spool
log-level-console=warn
log-level-file=info

[{STANZA}]
pg1-path={cl.datadir}
pg1-port={cl.port}
pg1-socket-path={cl.sockdir}
""")
    pg = pwd.getpwnam("postgres")
    os.chown(path, pg.pw_uid, pg.pw_gid)
    os.chmod(path, 0o600)


def pgbackrest(conf, *args, capture=True):
    return as_postgres(["pgbackrest", f"--config={conf}", f"--stanza={STANZA}"] + list(args),
                       capture=capture)


def time_amcheck(cl, bindir):
    """pg_amcheck as the DR drill runs it (heap and B-tree checks of every relation, no
    --heapallindexed), on the generated database; its time extrapolated to TARGET_GB."""
    db_bytes = int(cl.sql(f"SELECT pg_database_size('{DB}')")[0][0])
    argv = [os.path.join(bindir, "pg_amcheck"), "--install-missing", "-h", cl.sockdir,
            "-p", str(cl.port), "--database", DB]
    log("pg_amcheck " + " ".join(argv[1:]))
    started = time.monotonic()
    proc = subprocess.run(["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True)
    seconds = time.monotonic() - started
    findings = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    gb_min = db_bytes / 1e9 / (seconds / 60)
    result = {"database_bytes": db_bytes, "seconds": round(seconds, 1), "exit": proc.returncode, "findings": len(findings),
              "gb_per_min": round(gb_min, 2), "minutes_at_target": round(TARGET_GB / gb_min, 1)}
    log(f"pg_amcheck: {result}")
    return result


def combos(args):
    """--compress entries (type or type:level) x --process-max, each with its name."""
    out = []
    for entry in args.compress.split(","):
        compress, _, level = entry.partition(":")
        if compress not in ("lz4", "zst", "gz", "bz2", "none"):
            die(f"unknown compress-type {compress!r} in --compress")
        for pmax in (int(p) for p in args.process_max.split(",")):
            name = f"{compress}{level}{'-aes' if args.cipher else ''}-p{pmax}"
            out.append({"name": name, "compress": compress, "level": int(level) if level else None,
                        "pmax": pmax, "cipher": args.cipher})
    return out


def run_combo(cl, args, spec, conf_link, rows):
    combo = spec["name"]
    repo = f"/var/tmp/bench-repo-{combo}"
    conf = os.path.join(args.workdir, f"pgbackrest-{combo}.conf")
    restore_dir = os.path.join(args.workdir, f"restore-{combo}")
    shutil.rmtree(repo, ignore_errors=True)
    make_dir(repo)
    write_config(conf, repo, spec, cl, args.workdir)
    tmp = conf_link + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(conf, tmp)
    os.replace(tmp, conf_link)   # archive_command now pushes into this combo's repository
    pgbackrest(conf, "stanza-create")

    log(f"[{combo}] full backup")
    t0 = time.monotonic()
    pgbackrest(conf, "backup", "--type=full")
    backup_s = time.monotonic() - t0
    info = json.loads(pgbackrest(conf, "info", "--output=json").stdout)
    last = info[0]["backup"][-1]
    db_bytes = last["info"]["size"]                  # what pgBackRest copied (pg_wal excluded)
    repo_bytes = last["info"]["repository"]["size"]  # its compressed size in the repository
    repo_du = du(os.path.join(repo, "backup"))       # the backup set on disk, manifests included
    archive_du = du(os.path.join(repo, "archive"))
    log(f"[{combo}] backup {backup_s:.1f} s, {db_bytes / 1e9:.2f} GB -> {repo_bytes / 1e9:.3f} GB")

    shutil.rmtree(restore_dir, ignore_errors=True)
    make_dir(restore_dir)
    log(f"[{combo}] restore into empty {restore_dir}")
    t0 = time.monotonic()
    pgbackrest(conf, f"--pg1-path={restore_dir}", "--type=immediate", "--target-action=promote",
               "restore")
    restore_s = time.monotonic() - t0
    restored_bytes = du(restore_dir)
    log(f"[{combo}] restore {restore_s:.1f} s")

    verified = None
    if args.verify:
        sock = os.path.join(args.workdir, "sock-verify")
        make_dir(sock)
        rc = Cluster(cl.bindir, restore_dir, sock, VERIFY_PORT)
        try:
            rc.start("-c archive_mode=off")
            count = int(rc.sql(f"SELECT count(*) FROM {TABLE}")[0][0])
        finally:
            rc.stop()
        verified = count == rows
        log(f"[{combo}] restored cluster started, {count:,} rows ({'ok' if verified else 'MISMATCH'})")
        if not verified:
            die(f"restored cluster of {combo} has {count} rows, expected {rows}")
    shutil.rmtree(restore_dir, ignore_errors=True)

    gb = db_bytes / 1e9
    return {"combo": combo, "compress_type": spec["compress"], "compress_level": spec["level"],
            "process_max": spec["pmax"], "cipher": "aes-256-cbc" if spec["cipher"] else None,
            "db_bytes": db_bytes, "backup_seconds": round(backup_s, 1),
            "backup_gb_per_min": round(gb / backup_s * 60, 2),
            "repo_bytes": repo_bytes, "repo_du_bytes": repo_du, "archive_du_bytes": archive_du,
            "ratio": round(db_bytes / repo_bytes, 2),
            "restore_seconds": round(restore_s, 1), "restored_bytes": restored_bytes,
            "restore_gb_per_min": round(gb / restore_s * 60, 2), "restore_verified": verified}


def extrapolate(result, links_mbit):
    """Restore minutes for TARGET_GB: from repo1 at the measured local rate; from repo2 as the
    longer of moving the compressed bytes over the link and the local restore itself."""
    local_min = TARGET_GB / result["restore_gb_per_min"]
    compressed_gb = TARGET_GB / result["ratio"]
    out = {"repo1_restore_min": round(local_min, 1), "compressed_gb": round(compressed_gb, 1),
           "backup_min": round(TARGET_GB / result["backup_gb_per_min"], 1), "repo2": {}}
    for mbit in links_mbit:
        gb_per_min = mbit * 1e6 / 8 * 60 / 1e9
        transfer = compressed_gb / gb_per_min
        out["repo2"][str(mbit)] = {"link_gb_per_min": round(gb_per_min, 2),
                                   "transfer_min": round(transfer, 1),
                                   "restore_min": round(max(transfer, local_min), 1)}
    return out


def markdown(results, links_mbit):
    lines = ["| combo | db size GB | backup s | backup GB/min | repo bytes | ratio | restore s | restore GB/min |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['combo']} | {r['db_bytes'] / 1e9:.2f} | {r['backup_seconds']} | "
                     f"{r['backup_gb_per_min']} | {r['repo_bytes']:,} | {r['ratio']} | "
                     f"{r['restore_seconds']} | {r['restore_gb_per_min']} |")
    head = " | ".join(f"repo2 @ {m} Mbit/s: transfer / restore min" for m in links_mbit)
    lines += ["", f"Extrapolated to {TARGET_GB} GB (linear; targets: repo1 < 15 min, repo2 < 60 min, RTO 4 h):", "",
              f"| combo | backup min | repo1 restore min | compressed GB | {head} |",
              "|---|---|---|---|" + "---|" * len(links_mbit)]
    for r in results:
        e = r["extrapolation"]
        cells = " | ".join(f"{e['repo2'][str(m)]['transfer_min']} / {e['repo2'][str(m)]['restore_min']}"
                           for m in links_mbit)
        lines.append(f"| {r['combo']} | {e['backup_min']} | {e['repo1_restore_min']} | "
                     f"{e['compressed_gb']} | {cells} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=3.0, help="database size to generate, in GB (10^9 bytes)")
    ap.add_argument("--out", default="/tmp/backup-bench.json", help="JSON results file")
    ap.add_argument("--workdir", default="/var/tmp/bench-bk",
                    help="scratch directory: cluster, socket, configs, logs, restores")
    ap.add_argument("--pg-version", help="PostgreSQL major version (default: the newest installed)")
    ap.add_argument("--days", type=int, default=120, help="days the rows are spread over")
    ap.add_argument("--start-date", default="2025-06-01", help="work_date of the first row")
    ap.add_argument("--compress", default="lz4,zst",
                    help="compress-types to measure, comma-separated; type:level sets compress-level "
                         "(pgBackRest defaults: lz4 1, zst 3)")
    ap.add_argument("--cipher", action="store_true",
                    help="encrypt the repositories with aes-256-cbc, as the project's repo2 is")
    ap.add_argument("--process-max", default="1,2", help="process-max values, comma-separated")
    ap.add_argument("--links-mbit", default="1000,100",
                    help="off-site link speeds in Mbit/s for the repo2 extrapolation")
    ap.add_argument("--reuse", action="store_true", help="reuse the cluster and data left by --keep")
    ap.add_argument("--keep", action="store_true",
                    help="keep the cluster (left running) and the repositories at the end")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="do not start each restored cluster to count its rows")
    ap.add_argument("--amcheck", action="store_true",
                    help="also time pg_amcheck on the database, as the DR drill runs it")
    ap.add_argument("--no-backups", dest="backups", action="store_false",
                    help="measure no backup setting (with --amcheck: pg_amcheck alone)")
    args = ap.parse_args()

    if os.geteuid() != 0:
        die("run as root (it creates a cluster as the postgres user and scratch directories)")
    if not shutil.which("pgbackrest"):
        die("pgbackrest not found in PATH (apt-get install pgbackrest)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        die("no postgres OS user (install the Debian postgresql package)")
    specs = combos(args) if args.backups else []
    links = [int(m) for m in args.links_mbit.split(",")]

    bindir = find_bindir(args.pg_version)
    make_dir(args.workdir)
    for sub in ("log", "lock", "spool"):
        make_dir(os.path.join(args.workdir, sub))
    cl = Cluster(bindir, os.path.join(args.workdir, "pgdata"), os.path.join(args.workdir, "sock"), PORT)
    conf_link = os.path.join(args.workdir, "pgbackrest.conf")

    gen, results, amcheck = {}, [], None
    try:
        if args.reuse and os.path.exists(os.path.join(cl.datadir, "PG_VERSION")):
            log(f"reusing {cl.datadir}")
            if not os.path.exists(os.path.join(cl.datadir, "postmaster.pid")):
                cl.start()
        else:
            if os.path.exists(cl.datadir):
                cl.stop()
                shutil.rmtree(cl.datadir)
            create_cluster(cl, args)
            gen = generate(cl, args)
        configure_archiving(cl, conf_link)
        rows = int(cl.sql(f"SELECT count(*) FROM {TABLE}")[0][0])
        db_total = int(cl.sql("SELECT sum(pg_database_size(oid)) FROM pg_database")[0][0])
        table_bytes = int(cl.sql(f"SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('{TABLE}')")[0][0])
        versions = {"postgresql": cl.sql("SHOW server_version")[0][0],
                    "pgbackrest": subprocess.run(["pgbackrest", "version"], text=True,
                                                 stdout=subprocess.PIPE).stdout.strip(),
                    "data_checksums": cl.sql("SHOW data_checksums")[0][0]}
        log(f"{versions['postgresql']}, {versions['pgbackrest']}; {rows:,} rows, databases "
            f"{db_total / 1e9:.2f} GB (table and indexes {table_bytes / 1e9:.2f} GB), "
            f"data dir {du(cl.datadir) / 1e9:.2f} GB")

        if args.amcheck:
            amcheck = time_amcheck(cl, bindir)
        for spec in specs:
            r = run_combo(cl, args, spec, conf_link, rows)
            r["extrapolation"] = extrapolate(r, links)
            results.append(r)
    finally:
        if not args.keep:
            cl.stop()
            # Every repository of this script, those an earlier --keep run left included.
            for repo in glob.glob("/var/tmp/bench-repo-*"):
                shutil.rmtree(repo, ignore_errors=True)
            shutil.rmtree(args.workdir, ignore_errors=True)

    load = open("/proc/loadavg").read().split()[:3]
    out = {"versions": versions, "rows": rows, "databases_bytes": db_total,
           "table_bytes": table_bytes, "generation": gen, "cores": os.cpu_count(),
           "loadavg_at_end": load, "cache": "warm (page cache not dropped)",
           "target_gb": TARGET_GB, "links_mbit": links, "results": results, "amcheck": amcheck}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print()
    print(markdown(results, links))
    print(f"\nload average at end: {' '.join(load)}; {os.cpu_count()} cores; warm cache; JSON: {args.out}")


if __name__ == "__main__":
    main()
