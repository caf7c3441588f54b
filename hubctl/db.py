"""Database connections and small helpers shared by the commands.

psycopg2 is imported lazily so that `hubctl --help` and command-line errors work without it.
"""

from __future__ import annotations

import contextlib
import os
import time

from hubctl.config import Config

# Maintenance works as the owner of the hub's tables, so new partitions are owned by it.
OWNER_ROLE = "hub_owner"

# A table busy with the application makes maintenance DDL wait at most lock_timeout, then fail
# with this SQLSTATE; the work is tried again after these pauses (seconds) before the job gives
# up and alerts.
LOCK_NOT_AVAILABLE = "55P03"
LOCK_RETRY_PAUSES = (2, 5, 10)


def retry_on_lock_timeout(step, attempt, pauses=LOCK_RETRY_PAUSES, sleep=time.sleep):
    """Call attempt() until it returns; after a lock_timeout, pause and call it again.

    attempt must be safe to repeat (each of its transactions all-or-nothing). The number of
    retries is set on the step as lock_retries; any other error, or the last timeout, is raised.
    """
    for number in range(len(pauses) + 1):
        try:
            return attempt()
        except Exception as exc:
            if getattr(exc, "pgcode", None) != LOCK_NOT_AVAILABLE or number == len(pauses):
                raise
            step.set(lock_retries=number + 1)
            sleep(pauses[number])


def qualified(schema: str, name: str) -> str:
    """A schema-qualified name, each part double-quoted, for to_regclass(%s) and the like."""
    return '"{}"."{}"'.format(schema.replace('"', '""'), name.replace('"', '""'))


def _psycopg2():
    import psycopg2  # lazy on purpose
    import psycopg2.extras
    return psycopg2


def connect(cfg: Config, job: str, *, autocommit: bool = False, readonly: bool = False,
            maintenance: bool = False):
    """Open a connection with the config's libpq options and application_name=hubctl-<job>.

    maintenance: SET ROLE hub_owner and SET lock_timeout (session level), so DDL fails after
    lock_timeout instead of queueing the application's statements behind it.
    readonly: every transaction is READ ONLY (used by --dry-run and status).
    """
    psycopg2 = _psycopg2()
    # The password comes only from the passfile: a PGPASSWORD inherited from the caller's
    # environment would take precedence over it in libpq.
    os.environ.pop("PGPASSWORD", None)
    conn = psycopg2.connect(**cfg.database.connect_kwargs(application_name=f"hubctl-{job}"))
    try:
        if maintenance:
            with conn.cursor() as cur:
                cur.execute(f"SET ROLE {OWNER_ROLE}")
                cur.execute("SET lock_timeout = %s", (cfg.jobs.lock_timeout,))
            conn.commit()
        if readonly:
            conn.set_session(readonly=True)
        conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def transaction(conn):
    """One transaction: yields a cursor, commits on success, rolls back on any exception.

    Unlike `with conn:`, a connection that died keeps the original error (not
    "connection already closed" from the rollback).
    """
    cur = conn.cursor()
    try:
        yield cur
        conn.commit()
    except BaseException:
        if not conn.closed:
            try:
                conn.rollback()
            except Exception:  # the original error matters more
                pass
        raise
    finally:
        if not cur.closed:
            try:
                cur.close()
            except Exception:
                pass


def is_db_error(exc: BaseException) -> bool:
    """Whether exc is a psycopg2 error (without importing psycopg2 when it is not loaded)."""
    import sys
    mod = sys.modules.get("psycopg2")
    return mod is not None and isinstance(exc, mod.Error)


def describe_error(exc: BaseException) -> tuple[str, str | None]:
    """(one-line message, SQLSTATE or None) for logs, run records and alerts."""
    sqlstate = getattr(exc, "pgcode", None) if is_db_error(exc) else None
    text = str(exc).strip()
    diag = getattr(exc, "diag", None) if is_db_error(exc) else None
    if diag is not None and diag.message_primary:
        # The server's message, with DETAIL and HINT when they say something (pg_partman
        # re-raises errors with empty ones); CONTEXT (the SQL) is left out.
        parts = _split_server_message(diag.message_primary)
        for label, value in (("detail", diag.message_detail), ("hint", diag.message_hint)):
            if value and value.strip():
                parts.append(f"{label}: {value.strip()}")
        text = "; ".join(parts)
    text = " ".join(text.split())
    if not text:
        text = type(exc).__name__
    elif not is_db_error(exc) and not isinstance(exc, OSError):
        text = f"{type(exc).__name__}: {text}"
    return text[:1000], sqlstate


def _split_server_message(message: str) -> list[str]:
    """The first line of a server message, plus non-empty DETAIL/HINT lines embedded in it.

    pg_partman re-raises errors as one message 'msg\nCONTEXT: ...\nDETAIL: ...\nHINT: ...'.
    """
    lines = message.strip().splitlines()
    parts = [lines[0].strip()] if lines else []
    for line in lines[1:]:
        line = line.strip()
        for label in ("DETAIL:", "HINT:"):
            if line.startswith(label) and line[len(label):].strip():
                parts.append(f"{label[:-1].lower()}: {line[len(label):].strip()}")
    return parts


def partman_info(cur) -> tuple[str, int, str]:
    """(extversion, major version, schema) of pg_partman in this database."""
    cur.execute("""
        SELECT e.extversion, n.nspname
        FROM pg_catalog.pg_extension e
        JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_partman'""")
    row = cur.fetchone()
    if row is None:
        raise RuntimeError("pg_partman is not installed in this database")
    version, schema = row
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise RuntimeError(f"cannot read pg_partman version {version!r}") from None
    if major not in (4, 5):
        raise RuntimeError(f"pg_partman {version} is not supported (expected 4.7.x or 5.x)")
    return version, major, schema
