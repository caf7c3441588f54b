import os
import subprocess
import sys
import time

from hubctl.jobs import JobLock, lock_is_held


def test_second_holder_is_refused_in_one_process(tmp_path):
    first, second = JobLock(str(tmp_path)), JobLock(str(tmp_path))
    assert first.acquire("daily") is True
    try:
        assert second.acquire("stats") is False
        assert f"pid={os.getpid()} job=daily" in second.holder()
    finally:
        first.release()
    assert second.acquire("stats") is True
    second.release()


def test_lock_dir_is_created(tmp_path):
    lock = JobLock(str(tmp_path / "a" / "b"))
    assert lock.acquire("partitions") is True
    lock.release()
    assert os.path.exists(tmp_path / "a" / "b" / "hubctl.lock")


def test_second_holder_is_refused_across_processes(tmp_path, repo_root):
    code = ("import sys, time\n"
            "from hubctl.jobs import JobLock\n"
            "l = JobLock(sys.argv[1])\n"
            "print('taken' if l.acquire('daily') else 'busy', flush=True)\n"
            "time.sleep(30)\n")
    env = dict(os.environ, PYTHONPATH=repo_root)
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "taken"
        mine = JobLock(str(tmp_path))
        assert mine.acquire("stats") is False
        assert f"pid={child.pid} job=daily" in mine.holder()
        held = lock_is_held(str(tmp_path))
        assert held in (True, None)   # None only where /proc/locks is unreadable
        if os.path.exists("/proc/locks"):
            assert held is True
    finally:
        child.kill()
        child.wait()
    # the kernel drops the lock with its holder: no stale lock after a crash
    deadline = time.monotonic() + 5
    while True:
        mine = JobLock(str(tmp_path))
        if mine.acquire("stats"):
            break
        assert time.monotonic() < deadline, "lock not released after the holder died"
        time.sleep(0.05)
    mine.release()
    if os.path.exists("/proc/locks"):
        assert lock_is_held(str(tmp_path)) is False


def test_lock_is_held_without_a_file(tmp_path):
    assert lock_is_held(str(tmp_path / "none")) is False


def test_lock_file_owned_by_someone_else_still_locks(tmp_path, monkeypatch):
    # e.g. /run/lock/hub/hubctl.lock made by `flock(1)` as root, hubctl run as its user:
    # opening it read-write is denied, a read-only descriptor still takes the flock.
    (tmp_path / "hubctl.lock").write_text("")
    from hubctl import jobs
    real_open = os.open

    def deny_write(path, flags, *args):
        if flags & os.O_RDWR:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(jobs.os, "open", deny_write)
    first, second = JobLock(str(tmp_path)), JobLock(str(tmp_path))
    assert first.acquire("daily") is True
    try:
        assert second.acquire("daily") is False
    finally:
        first.release()


def _holder_process(tmp_path, repo_root, seconds):
    """A process that holds the lock for `seconds`, started and holding when this returns."""
    code = ("import sys, time\n"
            "from hubctl.jobs import JobLock\n"
            "l = JobLock(sys.argv[1])\n"
            "print('taken' if l.acquire('backup-full') else 'busy', flush=True)\n"
            f"time.sleep({seconds})\n")
    env = dict(os.environ, PYTHONPATH=repo_root)
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "lock")], env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "taken"
    return child


def test_a_job_with_wait_takes_the_lock_once_the_holder_ends(tmp_path, repo_root):
    """A long backup holds the lock at 03:00: the daily job waits for it instead of giving up."""
    from hubctl_testutil import run_hubctl, write_config
    cfg = write_config(tmp_path, port=1, jobs=f"lock_dir = {tmp_path}/lock\n"
                                              f"alert_command = cat > {tmp_path}/alert.txt\n")
    child = _holder_process(tmp_path, repo_root, 2)
    try:
        p = run_hubctl(repo_root, "--config", cfg, "--today", "2026-11-26", "stats", "--wait", "60")
    finally:
        child.kill()
        child.wait()
    assert "outcome=waiting" in p.stdout and "wait_s=60" in p.stdout and "job=backup-full" in p.stdout
    assert "outcome=taken" in p.stdout and "waited_ms=" in p.stdout
    # past the lock: the run starts (and fails only because the database is down), not busy
    assert p.returncode == 1, p
    assert "outcome=busy" not in p.stdout
    assert "hubctl stats: busy" not in (tmp_path / "alert.txt").read_text()


def test_a_job_whose_wait_runs_out_is_busy_and_says_how_long_it_waited(tmp_path, repo_root):
    from hubctl_testutil import run_hubctl, write_config
    cfg = write_config(tmp_path, port=1, jobs=f"lock_dir = {tmp_path}/lock\n"
                                              f"alert_command = cat > {tmp_path}/alert.txt\n")
    child = _holder_process(tmp_path, repo_root, 60)
    try:
        started = time.monotonic()
        p = run_hubctl(repo_root, "--config", cfg, "--today", "2026-11-26", "stats", "--wait", "2")
        elapsed = time.monotonic() - started
    finally:
        child.kill()
        child.wait()
    assert p.returncode == 75, p
    assert "outcome=waiting" in p.stdout and "outcome=busy" in p.stdout
    assert elapsed >= 2
    assert "after waiting 2 s" in (tmp_path / "alert.txt").read_text()


def test_wait_is_bounded_and_checked(tmp_path, repo_root):
    from hubctl_testutil import run_hubctl
    for value, fragment in (("-1", "expected 0 .. 43200"), ("43201", "expected 0 .. 43200"),
                            ("soon", "invalid seconds 'soon'")):
        p = run_hubctl(repo_root, "stats", "--wait", value)
        assert p.returncode == 2 and fragment in p.stderr, p


def test_waiting_polls_until_taken_with_one_line_each_way():
    import io
    from hubctl.jobs import Logger, acquire_waiting

    class Lock:
        path, fd, tries = "/run/lock/hub/hubctl.lock", None, 0

        def acquire(self, name):
            self.tries += 1
            return self.tries == 4

        def holder(self):
            return "pid=1 job=backup-full"

    now = [0.0]
    out = io.StringIO()
    lock = Lock()
    assert acquire_waiting(lock, "daily", 60, Logger("daily", out),
                           sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert lock.tries == 4 and now[0] == 15.0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "outcome=waiting" in lines[0] and "outcome=taken" in lines[1]
    lock = Lock()
    lock.tries = -100
    now[0] = 0.0
    assert not acquire_waiting(lock, "daily", 12, Logger("daily", io.StringIO()),
                               sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert now[0] == 12.0
