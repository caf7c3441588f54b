"""The job wrapper every mutating hubctl command runs in.

    lock   one exclusive flock on <lock_dir>/hubctl.lock for all hubctl jobs; if it is held,
           try again every few seconds for up to --wait seconds (0 by default, cron's jobs
           wait), then log "busy", record a 'busy' run, alert, exit 75, nothing else
    record a hub_job_runs row ('running') committed before any work; closed as ok/failed with
           finished_at, rows and detail (per-step counts, durations, errors) at the end
    steps  one log line per step on stdout:
           2026-11-26T03:00:01+09:00 hubctl job=daily step=stats date=2026-11-25 rows=1 duration_ms=12 outcome=ok
    alert  on failure or a refused overlap: alert_command gets the message on stdin and
           HUB_ALERT_JOB, HUB_ALERT_OUTCOME in its environment; its own failure is logged only

A command provides a body: a function taking a Job. The body opens steps with
`with job.step("name", key=value) as st:` and uses job.conn (a connection as hub_owner with
lock_timeout set; read-only under --dry-run). A database error inside a step is logged and
recorded, and the body goes on with its next step (the job then ends 'failed'); any other
exception, or a lost connection, ends the job at once as 'failed'.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

from hubctl import db
from hubctl.config import Config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ATTENTION = 3
EXIT_BUSY = 75      # EX_TEMPFAIL
EXIT_CONFIG = 78    # EX_CONFIG

LOCK_NAME = "hubctl.lock"
ALERT_TIMEOUT_S = 60

# Step outcomes. 'attention' ends the job with exit 3, is recorded as such and alerted;
# 'dry-run' is a step that would have changed something.
OK, ATTENTION, FAILED, DRY_RUN = "ok", "attention", "failed", "dry-run"

_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_.,:/+@%-]+$")


# --------------------------------------------------------------------------- log lines

def now_iso() -> str:
    """Local time with offset, to the second: 2026-11-26T03:00:01+09:00."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def format_value(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple, set)):
        value = ",".join(format_value(v) for v in value)
    text = str(value)
    if _PLAIN_VALUE.match(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def format_line(ts: str, job: str, step: str, fields: dict) -> str:
    """`<ts> hubctl job=<job> step=<step> k=v ...`; values with spaces or quotes are quoted."""
    parts = [ts, "hubctl", f"job={format_value(job)}", f"step={format_value(step)}"]
    parts += [f"{k}={format_value(v)}" for k, v in fields.items()]
    return " ".join(parts)


class Logger:
    def __init__(self, job: str, stream=None):
        self.job = job
        self.stream = stream

    def line(self, step: str, **fields) -> str:
        text = format_line(now_iso(), self.job, step, fields)
        print(text, file=self.stream or sys.stdout, flush=True)
        return text


# --------------------------------------------------------------------------- the lock

class JobLock:
    """fcntl.flock(LOCK_EX | LOCK_NB) on <lock_dir>/hubctl.lock, held until release()."""

    def __init__(self, lock_dir: str):
        self.path = os.path.join(lock_dir, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self, job: str) -> bool:
        """True if taken, False if another holder has it; OSError if the file is unusable."""
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        writable = True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except PermissionError:
            # The file belongs to someone else (e.g. made by `flock(1)` as root): flock works
            # on a read-only descriptor too; only the holder note is not written.
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            writable = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.fd = fd
        if writable:
            # Who holds it, for the "busy" message of the next run (informative only).
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid={os.getpid()} job={job} since={now_iso()}\n".encode(), 0)
        return True

    def holder(self) -> str:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as fh:
                return fh.read(200).strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None


def lock_is_held(lock_dir: str) -> bool | None:
    """Whether some process holds the hubctl lock, read from /proc/locks without taking it.

    None if it cannot be told. Used by status, which must never take the lock.
    """
    path = os.path.join(lock_dir, LOCK_NAME)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            for line in fh:
                fields = line.split()
                # 1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF   (a "->" marks waiters)
                if "->" in fields:
                    continue
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == dev:
                    return True
    except OSError:
        return None
    return False


# --------------------------------------------------------------------------- the alert

def fire_alert(cfg: Config, log: Logger, job: str, outcome: str, message: str) -> bool:
    """Run alert_command with the message on stdin; log its result. Never raises."""
    cmd = cfg.jobs.alert_command if cfg is not None else None
    return run_alert_command(cmd, log, job, outcome, message)


def run_alert_command(cmd: str | None, log: Logger, job: str, outcome: str,
                      message: str) -> bool:
    if not cmd:
        log.line("alert", outcome="skipped", reason="no alert_command configured")
        return False
    # No secrets: libpq variables are not passed on; hubctl itself never sets a password.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["HUB_ALERT_JOB"] = job
    env["HUB_ALERT_OUTCOME"] = outcome
    started = time.monotonic()
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        log.line("alert", duration_ms=_ms(started), outcome=FAILED,
                 error=f"cannot run alert_command: {exc}")
        return False
    try:
        out, _ = proc.communicate(message.encode("utf-8", "replace"), timeout=ALERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.communicate(timeout=5)
        log.line("alert", duration_ms=_ms(started), outcome=FAILED,
                 error=f"alert_command did not finish within {ALERT_TIMEOUT_S}s; killed")
        return False
    except OSError as exc:  # e.g. BrokenPipe when the command does not read stdin and exits
        proc.wait()
        out = b""
        if proc.returncode != 0:
            log.line("alert", rc=proc.returncode, duration_ms=_ms(started), outcome=FAILED,
                     error=str(exc))
            return False
    tail = " ".join(out.decode("utf-8", "replace").split())[-300:]
    if proc.returncode != 0:
        log.line("alert", rc=proc.returncode, duration_ms=_ms(started), outcome=FAILED,
                 output=tail or None)
        return False
    log.line("alert", rc=0, duration_ms=_ms(started), outcome=OK)
    return True


# --------------------------------------------------------------------------- the run record

class RunRecorder:
    """The hub_job_runs row of this run, written on its own autocommit connection."""

    def __init__(self, cfg: Config, job: str, connect=db.connect):
        self.cfg, self.job, self._connect = cfg, job, connect
        self.conn = None
        self.run_id: int | None = None

    def _cur(self, fresh: bool = False):
        if fresh or self.conn is None or self.conn.closed:
            self.close()
            self.conn = self._connect(self.cfg, self.job, autocommit=True)
        return self.conn.cursor()

    def start(self, detail: dict) -> tuple[int, list[int]]:
        """Close runs of this host left 'running' by a killed process (we hold the one lock of
        all hubctl jobs on this host, so none is alive; the off-site host records its backup
        runs here too, under its own lock), then insert ours. Each statement commits on its own."""
        from psycopg2.extras import Json
        with self._cur() as cur:
            cur.execute("""
                UPDATE public.hub_job_runs
                SET outcome = 'failed', finished_at = now(),
                    detail = coalesce(detail, '{}'::jsonb) || jsonb_build_object('error', %s::text)
                WHERE outcome = 'running' AND coalesce(detail->>'host', %s) = %s
                RETURNING id""",
                (f"abandoned: its process ended without closing the run; closed by the next "
                 f"hubctl run ({self.job})", socket.gethostname(), socket.gethostname()))
            stale = sorted(r[0] for r in cur.fetchall())
            cur.execute("INSERT INTO public.hub_job_runs (job, detail) VALUES (%s, %s) "
                        "RETURNING id", (self.job, Json(detail, dumps=_dumps)))
            self.run_id = cur.fetchone()[0]
        return self.run_id, stale

    def finish(self, outcome: str, rows: int | None, detail: dict) -> None:
        """Close the run; on a broken connection retry once on a fresh one."""
        from psycopg2.extras import Json
        sql = ("UPDATE public.hub_job_runs SET outcome = %s, finished_at = now(), rows = %s, "
               "detail = %s WHERE id = %s")
        args = (outcome, rows, Json(detail, dumps=_dumps), self.run_id)
        try:
            with self._cur() as cur:
                cur.execute(sql, args)
        except Exception:
            with self._cur(fresh=True) as cur:
                cur.execute(sql, args)

    def record_busy(self, detail: dict) -> int:
        from psycopg2.extras import Json
        with self._cur() as cur:
            cur.execute("""
                INSERT INTO public.hub_job_runs (job, finished_at, outcome, detail)
                VALUES (%s, now(), 'busy', %s) RETURNING id""",
                (self.job, Json(detail, dumps=_dumps)))
            return cur.fetchone()[0]

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


# --------------------------------------------------------------------------- job and steps

class Step:
    """One step: a log line and an entry in the run's detail."""

    def __init__(self, job: "Job", name: str, fields: dict):
        self.job, self.name = job, name
        self.fields = dict(fields)
        self.rows: int | None = None
        self.outcome = OK
        self.error: str | None = None
        self.sqlstate: str | None = None
        self.attention: list[str] = []
        self.duration_ms = 0

    def set(self, **fields) -> None:
        self.fields.update(fields)

    def need_attention(self, message: str) -> None:
        self.attention.append(message)
        if self.outcome != FAILED:
            self.outcome = ATTENTION

    def as_detail(self) -> dict:
        d = {"step": self.name, **self.fields, "rows": self.rows,
             "duration_ms": self.duration_ms, "outcome": self.outcome}
        if self.error:
            d["error"] = self.error
        if self.sqlstate:
            d["sqlstate"] = self.sqlstate
        if self.attention:
            d["attention"] = self.attention
        return {k: v for k, v in d.items() if v is not None}


class JobAbort(Exception):
    """Raised by a body to end the job as failed with a message (no traceback)."""


class Job:
    def __init__(self, name: str, cfg: Config, today: _dt.date, dry_run: bool, log: Logger,
                 connect=db.connect):
        self.name, self.cfg, self.today, self.dry_run, self.log = name, cfg, today, dry_run, log
        self._connect = connect
        self._conn = None
        self.steps: list[Step] = []

    @property
    def conn(self):
        """The work connection: as hub_owner with lock_timeout; read-only under --dry-run."""
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(self.cfg, self.name, maintenance=True,
                                       readonly=self.dry_run)
        return self._conn

    @contextlib.contextmanager
    def step(self, name: str, **fields):
        st = Step(self, name, fields)
        started = time.monotonic()
        try:
            yield st
        except BaseException as exc:
            st.outcome = FAILED
            st.error, st.sqlstate = db.describe_error(exc)
            self._finish_step(st, started)
            # A database error with the connection still usable ends this step only.
            if db.is_db_error(exc) and self._conn is not None and not self._conn.closed:
                return
            raise
        self._finish_step(st, started)

    def _finish_step(self, st: Step, started: float) -> None:
        st.duration_ms = _ms(started)
        fields = dict(st.fields)
        if st.rows is not None:
            fields["rows"] = st.rows
        fields["duration_ms"] = st.duration_ms
        fields["outcome"] = st.outcome
        if st.error:
            fields["error"] = st.error
        if st.sqlstate:
            fields["sqlstate"] = st.sqlstate
        self.log.line(st.name, **fields)
        self.steps.append(st)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    # summaries
    def failed_steps(self) -> list[Step]:
        return [s for s in self.steps if s.outcome == FAILED]

    def attention(self) -> list[str]:
        return [m for s in self.steps for m in s.attention]

    def rows(self) -> int:
        return sum(s.rows or 0 for s in self.steps)


class Terminated(BaseException):
    """SIGTERM arrived (cron or an operator stopping the job)."""


def _on_sigterm(signum, frame):
    raise Terminated(f"terminated by signal {signum}")


# How often a job waiting for the lock tries again, in seconds.
LOCK_POLL_SECONDS = 5.0


def acquire_waiting(lock: JobLock, name: str, wait: float, log: Logger,
                    sleep=time.sleep, clock=time.monotonic) -> bool:
    """Take the lock, trying again for up to `wait` seconds while another job holds it; one
    log line when the wait starts and one when it ends taken. OSError as acquire()."""
    if lock.acquire(name):
        return True
    if wait <= 0:
        return False
    started = clock()
    log.line("lock", path=lock.path, holder=lock.holder() or None, outcome="waiting",
             wait_s=int(wait))
    while clock() - started < wait:
        sleep(min(LOCK_POLL_SECONDS, max(0.0, wait - (clock() - started))))
        if lock.acquire(name):
            log.line("lock", path=lock.path, waited_ms=int((clock() - started) * 1000),
                     outcome="taken")
            return True
    return False


def run_job(name: str, cfg: Config, today: _dt.date, dry_run: bool,
            body: Callable[[Job], None], *, argv: list[str] | None = None,
            connect=db.connect, stream=None, wait: float = 0) -> int:
    """Run body under the lock with a run record; return the exit code. With wait, a held
    lock is tried again for up to that many seconds before the run is 'busy'."""
    log = Logger(name, stream)
    started = time.monotonic()
    base_detail = {"today": today.isoformat(), "host": socket.gethostname(), "pid": os.getpid()}
    if argv is not None:
        base_detail["argv"] = argv

    if dry_run:
        return _run_dry(name, cfg, today, body, log, connect, started)

    lock = JobLock(cfg.jobs.lock_dir)
    try:
        taken = acquire_waiting(lock, name, wait, log)
    except OSError as exc:
        msg = f"cannot use lock file {lock.path}: {exc.strerror or exc}"
        log.line("lock", path=lock.path, outcome=FAILED, error=msg)
        log.line("end", duration_ms=_ms(started), outcome=FAILED)
        fire_alert(cfg, log, name, FAILED, _alert_text(name, FAILED, today, None, msg))
        return EXIT_FAILED

    if not taken:
        holder = lock.holder()
        log.line("lock", path=lock.path, holder=holder or None, outcome="busy")
        rec = RunRecorder(cfg, name, connect)
        note = None
        run_id = None
        try:
            run_id = rec.record_busy({**base_detail, "holder": holder, "waited_s": int(wait)})
        except Exception as exc:
            note = f"the busy run could not be recorded: {db.describe_error(exc)[0]}"
            log.line("record", outcome=FAILED, error=note)
        finally:
            rec.close()
        log.line("end", run_id=run_id, duration_ms=_ms(started), outcome="busy")
        waited = f" after waiting {int(wait)} s" if wait > 0 else ""
        msg = f"another hubctl job holds {lock.path} ({holder or 'holder unknown'}){waited}; " \
              f"this run did nothing"
        if note:
            msg += f"; {note}"
        fire_alert(cfg, log, name, "busy", _alert_text(name, "busy", today, run_id, msg))
        return EXIT_BUSY

    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    rec = RunRecorder(cfg, name, connect)
    job = Job(name, cfg, today, False, log, connect)
    try:
        try:
            run_id, stale = rec.start(base_detail)
        except BaseException as exc:  # SIGTERM here must not escape unrecorded
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            err, sqlstate = db.describe_error(exc)
            log.line("start", outcome=FAILED, error=f"cannot record the run: {err}",
                     sqlstate=sqlstate)
            log.line("end", duration_ms=_ms(started), outcome=FAILED)
            fire_alert(cfg, log, name, FAILED,
                       _alert_text(name, FAILED, today, None, f"cannot record the run: {err}"))
            return EXIT_FAILED
        log.line("start", run_id=run_id, today=today, closed_stale=stale or None, outcome=OK)
        if stale:
            # A run killed without a word (SIGKILL, OOM, reboot) is reported now, at the latest.
            fire_alert(cfg, log, name, FAILED, _alert_text(
                name, FAILED, today, run_id,
                f"earlier run(s) {', '.join(map(str, stale))} ended without closing their "
                "record (killed?); closed as failed"))

        error = sqlstate = None
        try:
            body(job)
        except BaseException as exc:  # every way out is recorded
            error, sqlstate = db.describe_error(exc)
            if not isinstance(exc, (JobAbort, Terminated)) and not db.is_db_error(exc) \
                    and not isinstance(exc, (OSError, KeyboardInterrupt)):
                import traceback
                traceback.print_exc(file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the record be written
            job.close()

        failed = job.failed_steps()
        attention = job.attention()
        if error is None and failed:
            error = "; ".join(f"{s.name} {_step_key(s)}: {s.error}" for s in failed)[:1000]
        outcome = FAILED if (error or failed) else (ATTENTION if attention else OK)
        detail = {**base_detail, "steps": [s.as_detail() for s in job.steps],
                  "duration_ms": _ms(started)}
        if attention:
            detail["attention"] = attention
        if error:
            detail["error"] = error
            if sqlstate:
                detail["sqlstate"] = sqlstate
        rows = job.rows()
        try:
            rec.finish(outcome, rows, detail)
        except Exception as exc:
            note = f"the run record could not be closed: {db.describe_error(exc)[0]}"
            log.line("record", run_id=run_id, outcome=FAILED, error=note)
            error = f"{error}; {note}" if error else note
            outcome = FAILED
        end_fields = {"run_id": run_id, "rows": rows, "duration_ms": _ms(started),
                      "outcome": outcome}
        if outcome == FAILED:
            end_fields["error"] = error
        log.line("end", **end_fields)
        if outcome == FAILED:
            fire_alert(cfg, log, name, FAILED, _alert_text(name, FAILED, today, run_id, error))
            return EXIT_FAILED
        if outcome == ATTENTION:
            # Cron discards exit codes: rows stranded in a default partition must reach a person.
            fire_alert(cfg, log, name, ATTENTION,
                       _alert_text(name, ATTENTION, today, run_id, "; ".join(attention)[:1000]))
            return EXIT_ATTENTION
        return EXIT_OK
    finally:
        rec.close()
        job.close()
        lock.release()
        signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)


def _run_dry(name, cfg, today, body, log, connect, started) -> int:
    """--dry-run: no lock taken, no run record, read-only transactions; exit 0 unless the
    steps could not even be looked at."""
    log.line("lock", path=os.path.join(cfg.jobs.lock_dir, LOCK_NAME), outcome=DRY_RUN)
    job = Job(name, cfg, today, True, log, connect)
    error = None
    try:
        body(job)
    except Exception as exc:
        error = db.describe_error(exc)[0]
    finally:
        job.close()
    failed = job.failed_steps()
    if error is None and failed:
        error = "; ".join(f"{s.name} {_step_key(s)}: {s.error}" for s in failed)[:1000]
    if error:
        log.line("end", duration_ms=_ms(started), outcome=FAILED, dry_run=True, error=error)
        return EXIT_FAILED
    log.line("end", rows=job.rows(), duration_ms=_ms(started), outcome=DRY_RUN)
    return EXIT_OK


def _step_key(st: Step) -> str:
    return " ".join(f"{k}={format_value(v)}" for k, v in list(st.fields.items())[:1])


def _alert_text(job: str, outcome: str, today: _dt.date, run_id, message: str) -> str:
    return (f"hubctl {job}: {outcome} on {socket.gethostname()} at {now_iso()}\n"
            f"today: {today.isoformat()}\n"
            f"run id: {run_id if run_id is not None else '-'}\n"
            f"{message}\n")


def _ms(started: float) -> int:
    return int(round((time.monotonic() - started) * 1000))


def _dumps(obj) -> str:
    return json.dumps(obj, default=str)
