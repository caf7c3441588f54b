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
