"""The backup `hubctl convert finalize` requires before it drops the legacy table.

On a seed-era server the conversion may run before pgBackRest exists, and finalize drops
public.v1_hub_work_allocations_legacy: the rows as they were before the swap. So finalize
refuses unless a copy of the database taken after the swap exists: a pgBackRest backup (any
repository, not in error) that finished after the swap, or, by the operator's explicit choice,
a pg_dump file named with --dump that was written after the swap.
"""

from __future__ import annotations

import datetime as _dt
import os

# What a pg_dump file starts with: the custom format's magic, or a plain-format dump's header.
DUMP_HEADERS = (b"PGDMP", b"--\n-- PostgreSQL database dump")


def parse_time(text: str) -> _dt.datetime:
    """hub_convert.state.swapped_at as row_to_json writes it (ISO 8601 with offset)."""
    value = _dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(f"swapped_at {text!r} has no time zone")
    return value


def backup_after(info: dict, swapped_at: _dt.datetime) -> dict | None:
    """The newest good backup of `pgbackrest info` (one stanza's entry) that finished after
    the swap, or None."""
    after = [b for b in info.get("backup") or []
             if not b.get("error") and (b.get("timestamp") or {}).get("stop", 0) > swapped_at.timestamp()]
    return max(after, key=lambda b: b["timestamp"]["stop"]) if after else None


def dump_problem(path: str, swapped_at: _dt.datetime) -> str | None:
    """Why the file at path is not a pg_dump taken after the swap, or None."""
    if not os.path.isabs(path):
        return f"--dump {path}: give the dump's absolute path"
    try:
        st = os.stat(path)
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        return f"--dump {path}: {exc.strerror or exc}"
    if not os.path.isfile(path) or st.st_size == 0:
        return f"--dump {path} is not a file with content"
    if not any(head.startswith(h) for h in DUMP_HEADERS):
        return f"--dump {path} is not a pg_dump file (custom or plain format)"
    written = _dt.datetime.fromtimestamp(st.st_mtime, _dt.timezone.utc)
    if written <= swapped_at:
        return (f"--dump {path} was written at {written.isoformat(timespec='seconds')}, before "
                f"the swap ({swapped_at.isoformat(timespec='seconds')}): it lacks the rows "
                "written since")
    return None


def refusal(swapped_at: _dt.datetime, why: str) -> str:
    return (f"no backup of the database finished after the swap "
            f"({swapped_at.isoformat(timespec='seconds')}): {why}. finalize drops "
            "public.v1_hub_work_allocations_legacy, the rows as they were before the swap. Take "
            "a backup first (sudo -u hubmaint hubctl backup full), or name a pg_dump written "
            "after the swap: hubctl convert finalize --dump /path/to/hub.dump "
            "(the playbook: -e hub_convert_finalize_dump=/path/to/hub.dump)")
