"""The controller's private keys never reach version control: the backup CA and each host's key
are made under inventories/<site>/pki/ (pgbackrest_tls_pki_dir), which git must ignore."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", [
    "inventories/production/pki/hub-pgbackrest-ca.key",
    "inventories/production/pki/hub-db-1.key",
    "inventories/lab/pki/hub-pgbackrest-ca.key",
    "inventories/another-site/pki/hub-db-1.crt",
])
def test_git_ignores_the_controllers_pki_directory(path):
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT)
    assert result.returncode == 0, f"git would track {path}"


def test_the_inventories_themselves_are_not_ignored():
    result = subprocess.run(["git", "check-ignore", "--no-index", "-q",
                             "inventories/production/group_vars/all/main.yml"], cwd=ROOT)
    assert result.returncode == 1
