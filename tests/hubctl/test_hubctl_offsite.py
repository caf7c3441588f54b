"""The off-site copies: hubctl's ssh request and the store's own parsing of what it accepts."""

import importlib.machinery
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from hubctl import config as config_mod
from hubctl import offsite

ROOT = pathlib.Path(__file__).resolve().parents[2]
STORE = ROOT / "roles/backup_repo/files/hub-cold-store"


def load_store():
    loader = importlib.machinery.SourceFileLoader("hub_cold_store", str(STORE))
    spec = importlib.util.spec_from_loader("hub_cold_store", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


SHA = "a" * 64


def test_the_store_accepts_four_requests_on_cold_file_names_only():
    store = load_store()
    rel = "v1_hub_work_allocations/v1_hub_work_allocations_2025-08.copy.zst"
    assert store.parse(["put", rel, SHA]) == ("put", rel, SHA)
    assert store.parse(["get", rel.replace(".copy.zst", ".manifest.json")])[0] == "get"
    late = "t/t_2025-08.late-20261207T030012Z.copy.zst"
    assert store.parse(["check", late, SHA]) == ("check", late, SHA)
    assert store.parse(["list"]) == ("list", None, None)
    assert store.parse(["get", rel, SHA]) == ("get", rel, SHA)
    for words in (["rm", rel], ["put", rel], ["put", "../etc/passwd", SHA], ["get", "/etc/shadow"],
                  ["get", "t/u_2025-08.copy.zst"], ["get", "t/t_2025-08.copy.zst.enc"],
                  ["put", rel, "A" * 64], ["put", rel, SHA, "x"], [], ["list", "x"],
                  ["get", "t/t_2025-8.copy.zst"], ["get", "t/sub/t_2025-08.copy.zst"]):
        with pytest.raises(store.Refused):
            store.parse(words)


def test_the_store_keeps_each_version_encrypted_and_never_overwrites_one(tmp_path):
    passfile = tmp_path / "pass"
    passfile.write_text("a passphrase for this test only\n")
    env = dict(os.environ, HUB_COLD_STORE_DIR=str(tmp_path / "files"),
               HUB_COLD_STORE_PASSFILE=str(passfile))
    data = b"1\t2025-08-01\tone\n" * 1000
    sha = __import__("hashlib").sha256(data).hexdigest()
    rel = "t/t_2025-08.copy.zst"

    def run(*words, stdin=b""):
        return subprocess.run([sys.executable, str(STORE), *words], input=stdin, env=env,
                              capture_output=True, check=False)

    first = run("put", rel, sha, stdin=data)
    assert first.returncode == 0 and first.stdout.startswith(b"stored "), first.stderr
    stored = tmp_path / "files" / f"{rel}.{sha}.enc"
    assert data not in stored.read_bytes() and b"2025-08-01" not in stored.read_bytes()
    before = stored.read_bytes()
    assert run("put", rel, sha, stdin=data).stdout.startswith(b"present ")
    # Other bytes under the same name are another version; the first is untouched.
    other = b"other content\n"
    other_sha = __import__("hashlib").sha256(other).hexdigest()
    assert run("put", rel, other_sha, stdin=other).stdout.startswith(b"stored ")
    lying = run("put", "t/t_2025-09.copy.zst", sha, stdin=other)
    assert lying.returncode == 1 and b"nothing stored" in lying.stderr
    assert not list((tmp_path / "files" / "t").glob("t_2025-09*"))
    assert stored.read_bytes() == before
    assert run("get", rel, sha).stdout == data
    assert run("get", rel).stdout == other          # the version stored last
    assert run("get", rel, "c" * 64).returncode == 1
    assert run("check", rel, sha).returncode == 0
    assert run("check", rel, "b" * 64).returncode == 1
    other_file = tmp_path / "files" / f"{rel}.{other_sha}.enc"
    assert sorted(run("list").stdout.decode().splitlines()) == sorted(
        [f"{rel} {sha} {len(before)}", f"{rel} {other_sha} {other_file.stat().st_size}"])
    # Through sshd the request is SSH_ORIGINAL_COMMAND; anything else is refused with exit 2.
    env["SSH_ORIGINAL_COMMAND"] = "rm -rf /"
    assert run().returncode == 2
    assert sorted(p.name for p in (tmp_path / "files" / "t").iterdir()) == sorted(
        [stored.name, f"t_2025-08.copy.zst.{other_sha}.enc"])


def test_hubctl_asks_with_its_key_and_known_host_only():
    cold = config_mod.ColdConfig(offsite="hubcold@offsite.example", port=2222,
                                 ssh_key="/var/lib/hub/.ssh/cold_offsite",
                                 known_hosts="/var/lib/hub/.ssh/known_hosts")
    argv = offsite.ssh_argv(cold, "put", "t/t_2025-08.copy.zst", SHA)
    assert argv[:5] == ["ssh", "-i", "/var/lib/hub/.ssh/cold_offsite", "-p", "2222"]
    for option in ("IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=yes",
                   "UserKnownHostsFile=/var/lib/hub/.ssh/known_hosts"):
        assert option in argv
    assert argv[argv.index("--") + 1:] == ["hubcold@offsite.example", "put",
                                           "t/t_2025-08.copy.zst", SHA]


def test_a_cold_files_name_in_the_store_is_its_path_under_cold_dir():
    assert offsite.rel_name("/var/lib/hub/cold", "/var/lib/hub/cold/t/t_2025-08.copy.zst") == \
        "t/t_2025-08.copy.zst"
    for path in ("/etc/passwd", "/var/lib/hub/cold/t_2025-08.copy.zst",
                 "/var/lib/hub/cold/t/x/t_2025-08.copy.zst"):
        with pytest.raises(ValueError):
            offsite.rel_name("/var/lib/hub/cold", path)


def test_the_cold_section_of_the_config(tmp_path):
    passfile = tmp_path / "pgpass"
    passfile.write_text("")

    def load(cold):
        path = tmp_path / "hubctl.conf"
        path.write_text(f"[database]\nhost = h\ndbname = hub\nuser = u\npassfile = {passfile}\n"
                        + cold)
        return config_mod.load_config(str(path), check_passfile=False)

    assert load("").cold.offsite == ""
    cfg = load("[cold]\noffsite = hubcold@offsite-1.example\nport = 2222\n")
    assert (cfg.cold.offsite, cfg.cold.port) == ("hubcold@offsite-1.example", 2222)
    assert cfg.cold.ssh_key == config_mod.DEFAULT_COLD_SSH_KEY
    for bad in ("[cold]\noffsite = offsite.example\n", "[cold]\noffsite = a@b -oProxyCommand=x\n",
                "[cold]\noffsite = a@-oProxy\n", "[cold]\nport = 0\n", "[cold]\nssh_key = key\n",
                "[cold]\nuser = x\n"):
        with pytest.raises(config_mod.ConfigError):
            load(bad)
