"""Helpers for the hubctl tests (config files, passfiles, the command line in a subprocess)."""

import os
import subprocess
import sys


def write_pgpass(path, line="127.0.0.1:5432:hub:hub_maint:not-a-real-password\n", mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(line)
    os.chmod(path, mode)
    return str(path)


def write_config(tmp_path, *, passfile=None, port=5432, extra_db="", jobs=None,
                 name="hubctl.conf"):
    """A config in tmp_path; jobs is the text of the [jobs] section (lock_dir in tmp_path)."""
    if passfile is None:
        passfile = write_pgpass(tmp_path / "pgpass", f"127.0.0.1:{port}:hub:hub_maint:pw\n")
    if jobs is None:
        jobs = f"lock_dir = {tmp_path / 'lock'}\n"
    text = (f"[database]\nhost = 127.0.0.1\nport = {port}\ndbname = hub\n"
            f"user = hub_maint\nsslmode = require\npassfile = {passfile}\n{extra_db}\n"
            f"[jobs]\n{jobs}")
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run_hubctl(repo_root, *args, env_extra=None, timeout=60):
    """`python -m hubctl ARGS` in a subprocess, from /, without the caller's PG* variables
    or the test clock switch (env_extra may set them)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PG") and k != "HUBCTL_TEST_CLOCK"}
    env["PYTHONPATH"] = repo_root
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "hubctl", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd="/")
