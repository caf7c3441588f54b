"""hub-repo-snapshot (roles/backup_repo/files): repo2's dated copies, on real directories.

What pgBackRest lists comes from a JSON file here (the tool's info_command); the site scenario
(test_6_offsite_history.py) runs the tool against the real repo2 and its pgbackrest info.
"""

import datetime as dt
import importlib.machinery
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOL = ROOT / "roles/backup_repo/files/hub-repo-snapshot"
UTC = dt.timezone.utc


def load_tool():
    loader = importlib.machinery.SourceFileLoader("hub_repo_snapshot", str(TOOL))
    spec = importlib.util.spec_from_loader("hub_repo_snapshot", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


snap = load_tool()


class Repo:
    """A directory shaped like a pgBackRest repository, and the tool's configuration for it."""

    def __init__(self, tmp: pathlib.Path):
        self.root = tmp / "repo"
        self.snapdir = tmp / "snapshots"
        self.info = tmp / "info.json"
        self.conf = tmp / "snapshot.conf"
        self.conf.write_text(f"[snapshot]\nrepo = {self.root}\ndir = {self.snapdir}\nkeep_days = 10\n"
                             f"service =\ninfo_command = cat {self.info}\n")
        for rel in ("archive/hub/archive.info", "archive/hub/archive.info.copy",
                    "backup/hub/backup.info", "backup/hub/backup.info.copy"):
            self.write(rel, "info")
        self.backups: list[dict] = []

    def write(self, rel: str, text: str) -> pathlib.Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def add_backup(self, label: str, kind: str) -> None:
        self.write(f"backup/hub/{label}/backup.manifest", f"manifest {label}")
        self.write(f"backup/hub/{label}/pg_data/base/1/1234.zst", f"data {label}")
        latest = self.root / "backup/hub/latest"
        if latest.is_symlink():
            latest.unlink()
        latest.symlink_to(label)
        self.backups.append({"label": label, "type": kind, "timestamp": {"start": 1, "stop": 2}})
        self.list_backups()

    def list_backups(self) -> None:
        self.info.write_text(json.dumps([{"name": "hub", "backup": self.backups}]))

    def cfg(self) -> dict:
        return snap.load_config(str(self.conf))


@pytest.fixture
def repo(tmp_path) -> Repo:
    r = Repo(tmp_path)
    r.add_backup("20261201-060000F", "full")
    r.write("archive/hub/16-1/0000000100000000/000000010000000000000001-abc.zst", "wal 1")
    return r


def at(day: int, hour: int = 7) -> dt.datetime:
    return dt.datetime(2026, 12, day, hour, 30, tzinfo=UTC)


def test_a_snapshot_is_a_root_only_copy_and_the_next_links_what_did_not_change(repo):
    first = snap.take(repo.cfg(), now=at(1))
    assert first["restorable"] and [b["label"] for b in first["backups"]] == ["20261201-060000F"]
    assert (repo.snapdir.stat().st_mode & 0o777) == 0o700
    one = repo.snapdir / first["snapshot"]
    assert (one / "backup/hub/latest").readlink() == pathlib.Path("20261201-060000F")
    # A file pgBackRest is still writing is left out.
    repo.write("archive/hub/16-1/0000000100000000/000000010000000000000003-ccc.zst.pgbackrest.tmp", "half")
    wal2 = repo.write("archive/hub/16-1/0000000100000000/000000010000000000000002-def.zst", "wal 2")
    second = snap.take(repo.cfg(), now=at(2))
    two = repo.snapdir / second["snapshot"]
    rel1 = "archive/hub/16-1/0000000100000000/000000010000000000000001-abc.zst"
    assert (two / rel1).stat().st_ino == (one / rel1).stat().st_ino, "an unchanged file was copied again"
    assert (two / rel1).stat().st_ino != (repo.root / rel1).stat().st_ino, "a snapshot shares a file with repo2"
    assert (two / wal2.relative_to(repo.root)).read_text() == "wal 2"
    assert not list(two.rglob("*.pgbackrest.tmp"))
    # Copied: the four info files (always, read first) and the new segment; the rest is linked.
    assert second["copied"] == 5 and second["linked"] >= 3, second
    # A file repo2 rewrote (another size or time) is copied; the older snapshot keeps its bytes.
    os.utime(repo.root / rel1, ns=(0, 10**18))
    (repo.root / rel1).write_text("overwritten by the hub")
    third = snap.take(repo.cfg(), now=at(3))
    assert (repo.snapdir / third["snapshot"] / rel1).read_text() == "overwritten by the hub"
    assert (one / rel1).read_text() == "wal 1" and (two / rel1).read_text() == "wal 1"


def test_a_backup_listed_but_not_copied_keeps_no_snapshot(repo):
    repo.backups.append({"label": "20261202-060000D", "type": "diff", "timestamp": {"start": 1, "stop": 2}})
    repo.list_backups()
    with pytest.raises(snap.Failed, match="20261202-060000D"):
        snap.take(repo.cfg(), now=at(2))
    assert os.listdir(repo.snapdir) == [".lock"]


def test_retention_keeps_the_history_an_emptied_repo2_no_longer_lists(repo):
    older = snap.take(repo.cfg(), now=at(1))["snapshot"]
    good = snap.take(repo.cfg(), now=at(1, 8))
    assert good["lost_fulls"] == []
    good = good["snapshot"]
    # The hub empties repo2 (a stanza-delete): the snapshots after it hold no backup, and each
    # names the full repo2's retention would still keep.
    shutil.rmtree(repo.root / "backup")
    repo.backups = []
    repo.list_backups()
    empty = snap.take(repo.cfg(), now=at(2))
    assert not empty["restorable"] and empty["lost_fulls"] == ["20261201-060000F"]
    # Thirty days on, past keep_days: the empty ones go, the last snapshot of that full stays.
    late = snap.take(repo.cfg(), now=at(31))
    assert sorted(late["pruned"]) == sorted([older, empty["snapshot"]])
    assert good in snap.snapshot_names(str(repo.snapdir))
    # A new full: the old one is still among the twelve repo2 keeps (retention_full), so its
    # snapshot stays; with a retention of one full it is history like any other.
    repo.add_backup("20261231-060000F", "full")
    assert good not in snap.take(repo.cfg(), now=at(31, 8))["pruned"]
    repo.conf.write_text(repo.conf.read_text().replace("keep_days = 10\n", "keep_days = 10\nretention_full = 1\n"))
    assert good in snap.take(repo.cfg(), now=at(31, 9))["pruned"]


def test_a_full_removed_from_repo2_is_named_and_one_retention_expired_is_not(repo):
    repo.conf.write_text(repo.conf.read_text().replace("keep_days = 10\n", "keep_days = 10\nretention_full = 2\n"))
    repo.add_backup("20261208-060000F", "full")
    assert snap.take(repo.cfg(), now=at(8))["lost_fulls"] == []
    # The hub thins repo2: backup.info no longer lists the older full.
    repo.backups = [b for b in repo.backups if b["label"] != "20261201-060000F"]
    repo.list_backups()
    assert snap.take(repo.cfg(), now=at(9))["lost_fulls"] == ["20261201-060000F"]
    # A third full, and the expire of repo2's retention (two fulls) removes the oldest: that
    # is retention, not a loss.
    repo.add_backup("20261215-060000F", "full")
    assert snap.take(repo.cfg(), now=at(15))["lost_fulls"] == []


def test_restore_puts_a_copy_back_and_keeps_the_damaged_repository(repo):
    name = snap.take(repo.cfg(), now=at(1))["snapshot"]
    shutil.rmtree(repo.root / "backup")
    done = snap.restore(repo.cfg(), name, now=at(2))
    assert done["restored"] == name and [b["label"] for b in done["backups"]] == ["20261201-060000F"]
    manifest = repo.root / "backup/hub/20261201-060000F/backup.manifest"
    assert manifest.read_text() == "manifest 20261201-060000F"
    assert (repo.root / "backup/hub/latest").is_symlink()
    # The restored files are copies: what the hub writes into repo2 never reaches the snapshot.
    assert manifest.stat().st_ino != (repo.snapdir / name / manifest.relative_to(repo.root)).stat().st_ino
    assert not (pathlib.Path(done["replaced"]) / "backup").exists()


def run(repo: Repo, *words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *words], capture_output=True, text=True,
                          env=dict(os.environ, HUB_REPO_SNAPSHOT_CONF=str(repo.conf)), check=False)


@pytest.mark.parametrize("words", [(), ("delete", "x"), ("take", "now"), ("restore",),
                                   ("restore", "../../etc"), ("restore", "20200101T000000Z")])
def test_requests_it_does_not_accept_are_refused_and_change_nothing(repo, words):
    before = sorted(p.relative_to(repo.root) for p in repo.root.rglob("*"))
    result = run(repo, *words)
    assert result.returncode == 2, result.stderr
    assert "refused" in result.stderr
    assert sorted(p.relative_to(repo.root) for p in repo.root.rglob("*")) == before
    assert not repo.snapdir.exists()


def test_take_and_list_from_the_command_line(repo):
    taken = run(repo, "take")
    assert taken.returncode == 0, taken.stderr
    record = json.loads(taken.stdout)
    listed = [json.loads(line) for line in run(repo, "list").stdout.splitlines()]
    assert [s["snapshot"] for s in listed] == [record["snapshot"]] and listed[0]["restorable"]


def test_a_snapshot_directory_others_can_read_is_refused(repo):
    repo.snapdir.mkdir(mode=0o755)
    repo.snapdir.chmod(0o755)
    result = run(repo, "take")
    assert result.returncode == 1 and "0700 only" in result.stderr
