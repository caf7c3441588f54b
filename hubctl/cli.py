"""Command line: hubctl [--config PATH] [--dry-run] [--today YYYY-MM-DD] COMMAND ...

Commands are registered in COMMANDS. A mutating command (a "job") gives a body that runs
inside jobs.run_job (lock, run record, log lines, alert); a read-only command gives run().
Archive and cold export are added the same way: a module with a body, and an entry here.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import sys
from typing import Callable

from hubctl import __version__, archive, backup, cold, daily, jobs, partitions, stats, status
from hubctl import capacity, convert, drill, metrics, walcheck
from hubctl.config import DEFAULT_CONFIG, ConfigError, load_config
from hubctl.dates import parse_date, resolve_stats_days


@dataclasses.dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda p: None
    # Checks the arguments once today is known; raises ValueError (exit 2, nothing done).
    validate: Callable[[argparse.Namespace, _dt.date], None] = lambda a, t: None
    # A job: returns the body run under jobs.run_job.
    body: Callable[[argparse.Namespace], Callable[[jobs.Job], None]] | None = None
    # A read-only command: returns the exit code itself.
    run: Callable[[argparse.Namespace, object, _dt.date], int] | None = None
    # A command given by `run` that changes data all the same (a job always does).
    changes_data: bool = False
    # Checks the arguments against the database before the job starts (read-only): raises
    # ValueError for input that names nothing (exit 2, no run record, no alert).
    precheck: Callable[[argparse.Namespace, object], None] | None = None

    @property
    def mutating(self) -> bool:
        return self.body is not None or self.changes_data


# The test switch: with it set to 1 in the environment (the Molecule harness does), a command
# that changes data accepts a --today later than the real date. Production never sets it.
TEST_CLOCK_ENV = "HUBCTL_TEST_CLOCK"


def check_today(cmd: Command, args: argparse.Namespace, real_today: _dt.date,
                environ=os.environ) -> None:
    """A --today in the future would archive or drop months that are still young: refused
    (ValueError) for a command that changes data, unless it is a dry run or the test switch
    is set."""
    if args.today is None or args.today <= real_today or not cmd.mutating:
        return
    if getattr(args, "dry_run", False) or environ.get(TEST_CLOCK_ENV) == "1":
        return
    raise ValueError(f"--today {args.today.isoformat()} is later than the real date "
                     f"({real_today.isoformat()}): {cmd.name} would act on months that are "
                     "still young (archive the current month, drop a month to cold). A later "
                     "--today is for tests only (--dry-run shows what it would do); nothing "
                     "done")


# A job never waits longer than this for the lock: the next day's run would meet it.
MAX_WAIT_SECONDS = 12 * 3600


def _seconds_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seconds '{text}'") from None
    if not 0 <= value <= MAX_WAIT_SECONDS:
        raise argparse.ArgumentTypeError(f"--wait {value}: expected 0 .. {MAX_WAIT_SECONDS} "
                                         "seconds")
    return value


def _date_arg(text: str) -> _dt.date:
    try:
        return parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------- commands

def _stats_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", type=_date_arg, metavar="YYYY-MM-DD",
                   help="roll up this day (default: yesterday)")
    p.add_argument("--from", dest="date_from", type=_date_arg, metavar="YYYY-MM-DD",
                   help="first day of a backfill range (with --to)")
    p.add_argument("--to", dest="date_to", type=_date_arg, metavar="YYYY-MM-DD",
                   help="last day of a backfill range (with --from)")


def _stats_validate(args: argparse.Namespace, today: _dt.date) -> None:
    args.days = resolve_stats_days(today, args.date, args.date_from, args.date_to)


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for machines")


def _status_run(args: argparse.Namespace, cfg, today: _dt.date) -> int:
    log = jobs.Logger("status")
    try:
        data = status.collect(cfg, today)
    except Exception as exc:
        from hubctl.db import describe_error
        log.line("status", outcome=jobs.FAILED, error=describe_error(exc)[0])
        return jobs.EXIT_FAILED
    print(status.to_json(data) if args.json else status.to_text(data), flush=True)
    return jobs.EXIT_OK


def _month_arg(text: str) -> _dt.date:
    try:
        return cold.parse_month(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cold_args(p: argparse.ArgumentParser) -> None:
    """`cold export [--month M] [--table T]` and `cold restore M [--table T]`; each records its
    runs as the job cold-export or cold-restore."""
    sub = p.add_subparsers(dest="cold_action", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="export archived months older than cold_after_days "
                       "(365) to verified zstd files, then drop them",
                       description="Export every cold-eligible archived month (or one month, "
                       "or one table) to a zstd-compressed COPY file under cold_dir, verify it "
                       "by reading it back, then drop the partition (ledger state 'cold').")
    _global_options(e, suppress=True)
    e.add_argument("--month", type=_month_arg, metavar="YYYY-MM",
                   help="only this month (it must be cold-eligible)")
    e.add_argument("--table", choices=cold.TABLES, metavar="NAME",
                   help=f"only this table ({', '.join(cold.TABLES)})")
    e.set_defaults(job_name="cold-export")
    r = sub.add_parser("restore", help="load a cold month into hub_restored.<table>_pYYYY_MM",
                       description="Load one cold month back into a standalone table "
                       f"{cold.RESTORE_SCHEMA}.<table>_pYYYY_MM, verified against the ledger's "
                       "count and checksum; refused if that table exists.")
    _global_options(r, suppress=True)
    r.add_argument("month", type=_month_arg, metavar="YYYY-MM", help="the month to restore")
    r.add_argument("--table", choices=cold.TABLES, default=cold.DEFAULT_RESTORE_TABLE,
                   metavar="NAME", help=f"the table (default {cold.DEFAULT_RESTORE_TABLE}; "
                   f"one of {', '.join(cold.TABLES)})")
    r.set_defaults(job_name="cold-restore")


def _cold_precheck(args: argparse.Namespace, cfg) -> None:
    if args.cold_action == "restore":
        cold.check_restorable(cfg, args.table, args.month)


def _cold_body(args: argparse.Namespace) -> Callable[[jobs.Job], None]:
    if args.cold_action == "restore":
        return lambda job: cold.restore(job, args.table, args.month)
    return lambda job: cold.export(job, args.table, args.month)


COMMANDS = {c.name: c for c in (
    Command("partitions", "make sure every live table has its monthly partitions; "
            "report rows in default partitions",
            body=lambda args: partitions.run),
    Command("stats", "roll up v1_hub_work_allocations into v1_hub_daily_stats "
            "(--date D, or --from D --to D; default yesterday)",
            add_arguments=_stats_args, validate=_stats_validate,
            body=lambda args: (lambda job: stats.rollup(job, args.days))),
    Command("archive", "move months older than archive_after_days (90) from the live tables to "
            "their _archive tables (detach/attach, no copy), and late rows of archived months",
            body=lambda args: archive.run),
    Command("cold", "cold export: archived months older than cold_after_days (365) to verified "
            "files, then dropped; cold restore YYYY-MM: one back into hub_restored",
            add_arguments=_cold_args, body=_cold_body, precheck=_cold_precheck),
    Command("daily", "the 03:00 job: archive, cold export, partitions, yesterday's stats, "
            "then the day's size snapshot",
            body=lambda args: daily.run),
    Command("convert", "convert the seed's plain v1_hub_work_allocations into the partitioned "
            "table while the application writes (phases of playbooks/migrate-partitioned.yml)",
            add_arguments=convert.add_arguments, run=convert.run, changes_data=True),
    Command("status", "show last runs, default-partition rows, partitions ahead, latest "
            "stats (read-only)", add_arguments=_status_args, run=_status_run),
    Command("backup", "pgBackRest: full|incr (repo1), offsite (repo2, on the off-site host), "
            "expire, verify", add_arguments=lambda p: backup.add_arguments(p, _global_options),
            body=backup.body),
    Command("backup-status", "age and health of the newest backup in each pgBackRest "
            "repository (read-only)", add_arguments=backup.status_arguments,
            run=backup.status_run),
    Command("metrics", "write the hub's facts (jobs, table sizes, partitions, slow statements, "
            "WAL archiving, backups, free space) as a node-exporter textfile (read-only)",
            add_arguments=metrics.add_arguments, validate=metrics.validate, run=metrics.run),
    Command("wal-check", "list each pgBackRest repository's WAL archive and count the segments "
            "missing since its newest and oldest backup, as a node-exporter textfile (read-only)",
            add_arguments=walcheck.add_arguments, validate=walcheck.validate, run=walcheck.run),
    Command("capacity", "growth per table and in total over the last 30 days of size "
            "snapshots, the dates the data volume reaches 70 % and 100 %, beside the seed's "
            "forecast (read-only)", add_arguments=capacity.add_arguments,
            validate=capacity.validate, run=capacity.run),
    Command("marker", "insert one row into hub_markers (cron, every 5 minutes): what DR drills "
            "measure the RPO with; no lock, no run record", add_arguments=drill.marker_arguments,
            run=drill.marker_run, changes_data=True),
)}


# --------------------------------------------------------------------------- parser

def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    p.add_argument("--config", metavar="PATH", default=d(DEFAULT_CONFIG),
                   help=f"configuration file (default {DEFAULT_CONFIG})")
    p.add_argument("--dry-run", action="store_true", default=d(False),
                   help="connect and report what each step would do; change nothing")
    p.add_argument("--today", type=_date_arg, metavar="YYYY-MM-DD", default=d(None),
                   help="act as if today were this date (tests; a later date than the real "
                        f"one only with {TEST_CLOCK_ENV}=1 for commands that change data)")
    p.add_argument("--wait", type=_seconds_arg, metavar="SECONDS", default=d(0),
                   help="jobs: if another job holds the lock, try again for up to this long "
                        "before giving up as busy (default 0; cron's jobs wait)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubctl", description="Maintenance jobs of the hub database.",
        epilog="exit codes: 0 ok, 1 failed, 2 bad usage, 3 attention (e.g. rows in a default "
               "partition), 75 busy (another job holds the lock), 78 configuration error")
    parser.add_argument("--version", action="version", version=f"hubctl {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        # The global options are also accepted after the command.
        _global_options(p, suppress=True)
        cmd.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)          # exits 2 on bad input
    today = args.today or _dt.date.today()
    cmd = COMMANDS[args.command]
    try:
        check_today(cmd, args, _dt.date.today())
        cmd.validate(args, today)
    except ValueError as exc:
        parser.exit(jobs.EXIT_USAGE, f"{parser.prog} {cmd.name}: error: {exc}\n")

    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        if cmd.body is not None:
            log = jobs.Logger(cmd.name)
            log.line("config", path=args.config, outcome=jobs.FAILED, error=str(exc))
            if exc.alert_command and not args.dry_run:
                jobs.run_alert_command(
                    exc.alert_command, log, cmd.name, jobs.FAILED,
                    f"hubctl {cmd.name}: failed (configuration error), nothing done\n"
                    f"today: {today.isoformat()}\n{exc}\n")
        else:
            print(f"hubctl: {exc}", file=sys.stderr)
        return jobs.EXIT_CONFIG

    if cmd.precheck is not None:
        try:
            cmd.precheck(args, cfg)
        except ValueError as exc:
            parser.exit(jobs.EXIT_USAGE, f"{parser.prog} {cmd.name}: error: {exc}\n")
        except Exception:
            # The database could not be asked: the job itself meets the same error and
            # records and reports it as a failure.
            pass

    if cmd.run is not None:
        return cmd.run(args, cfg, today)
    return jobs.run_job(getattr(args, "job_name", cmd.name), cfg, today, args.dry_run,
                        cmd.body(args), argv=argv, wait=args.wait)
