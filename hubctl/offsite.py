"""The off-site copies of the cold files: hubctl's side of hub-cold-store.

The off-site host keeps a second, encrypted copy of every cold file (a month's file, its
manifest, each supplement of late rows) under the same relative name, `<table>/<file>`. hubctl
reaches it over SSH with a key whose only use on the far side is the forced command
`hub-cold-store` (roles/backup_repo/files/hub-cold-store): `put` adds a version of a file (its
sha256 names it) and answers only once its encrypted copy has been read back with that sha256;
`get` streams a version back. Nothing the hub holds can remove or overwrite a stored version.

A month is dropped from the database only after both its files are stored and verified there
(cold.py); a late-rows supplement is committed only after it is.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

from hubctl.jobs import JobAbort

# One file's transfer: a month of the busiest table is tens of MB; a stalled link ends sooner
# through ServerAlive (about a minute without an answer).
TIMEOUT = 3600
# A supplement of late rows is a few kB, stored while its transaction holds those rows.
SHORT_TIMEOUT = 300


class OffsiteError(JobAbort):
    """The off-site store could not be reached, or refused or failed a request."""


def configured(cfg) -> bool:
    return bool(cfg.cold.offsite)


def ssh_argv(cold, *words: str) -> list[str]:
    """ssh to the store: the key alone, the known host's key alone, never a question."""
    return ["ssh", "-i", cold.ssh_key, "-p", str(cold.port),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={cold.known_hosts}",
            "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR",
            "--", cold.offsite, *words]


def rel_name(cold_dir: str, path: str) -> str:
    """A cold file's name in the store: its path under cold_dir (<table>/<file>)."""
    rel = os.path.relpath(path, cold_dir)
    if rel.startswith("..") or os.path.isabs(rel) or rel.count("/") != 1:
        raise ValueError(f"{path} is not a file of a table's directory under {cold_dir}")
    return rel


def _message(proc_stderr: bytes, rc: int) -> str:
    text = " ".join(proc_stderr.decode("utf-8", "replace").split())[-400:]
    return f"exit {rc}: {text or 'no message'}"


def put(cfg, path: str, sha256: str, timeout: float = TIMEOUT) -> str:
    """Store path's bytes off-site as the version sha256 of its relative name; return the
    store's answer ('stored ...' or 'present ...', both after the read-back). OffsiteError
    otherwise."""
    rel = rel_name(cfg.jobs.cold_dir, path)
    with open(path, "rb") as src:
        try:
            proc = subprocess.run(ssh_argv(cfg.cold, "put", rel, sha256), stdin=src,
                                  capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OffsiteError(f"cannot copy {rel} to {cfg.cold.offsite}: {exc}") from None
    answer = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0 or not answer.startswith(("stored ", "present ")) \
            or f"sha256={sha256}" not in answer or "verified" not in answer:
        raise OffsiteError(f"{cfg.cold.offsite} did not store {rel} "
                           f"({_message(proc.stderr, proc.returncode)})")
    return answer


def get(cfg, rel: str, dest: str, sha256: str | None = None) -> None:
    """Write the store's version sha256 of rel (without it, the version stored last) to dest
    (a new file, fsynced). The caller checks its sha256 against the ledger. OffsiteError if the
    store cannot give it."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    try:
        with tempfile.TemporaryFile() as err:
            try:
                words = ["get", rel] + ([sha256] if sha256 else [])
                proc = subprocess.run(ssh_argv(cfg.cold, *words), stdin=subprocess.DEVNULL,
                                      stdout=fd, stderr=err, timeout=TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise OffsiteError(f"cannot fetch {rel} from {cfg.cold.offsite}: {exc}") from None
            if proc.returncode != 0:
                err.seek(0)
                raise OffsiteError(f"{cfg.cold.offsite} did not give {rel} "
                                   f"({_message(err.read(), proc.returncode)})")
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        fd = None
        try:
            os.unlink(dest)
        except FileNotFoundError:
            pass
        raise
    finally:
        if fd is not None:
            os.close(fd)
