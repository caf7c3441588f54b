"""What an operator checks on a host prepared for the hub's PostgreSQL server."""

import re
import pytest


@pytest.fixture(scope="module")
def device(host):
    return host.ansible.get_variables()["hub_test_data_device"]


def test_data_volume_is_formatted_with_the_roles_label(host, device):
    probe = host.run("blkid -p -o export %s", device).stdout.splitlines()
    assert "TYPE=ext4" in probe
    assert "LABEL=hub_pgdata" in probe


def test_data_volume_is_mounted_by_uuid_with_noatime(host, device):
    uuid = host.run("blkid -p -s UUID -o value %s", device).stdout.strip()
    assert uuid
    fstab = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()]
    entry = [fields for fields in fstab if fields and fields[0] == f"UUID={uuid}"]
    assert entry == [[f"UUID={uuid}", "/var/lib/postgresql", "ext4", "noatime", "0", "2"]]
    mount = host.mount_point("/var/lib/postgresql")
    assert mount.exists
    assert mount.device == device
    assert mount.filesystem == "ext4"
    assert "noatime" in mount.options


def test_data_volume_is_used_for_writes(host):
    # A file written under the data root lands on the volume, not on the container's root.
    host.run("touch /var/lib/postgresql/.probe")
    assert host.run("findmnt -no TARGET -T /var/lib/postgresql/.probe").stdout.strip() == "/var/lib/postgresql"
    host.run("rm -f /var/lib/postgresql/.probe")


def test_kernel_settings_are_persisted(host):
    settings = dict(
        line.replace(" ", "").split("=", 1)
        for line in host.file("/etc/sysctl.d/60-hub-postgresql.conf").content_string.splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings == {
        "vm.swappiness": "1",
        "vm.dirty_background_bytes": "67108864",
        "vm.dirty_bytes": "536870912",
        "vm.overcommit_memory": "2",
        "vm.overcommit_ratio": "90",
    }
    # Every name exists in this kernel, so `sysctl --system` at boot applies them all.
    for name in settings:
        assert host.file("/proc/sys/" + name.replace(".", "/")).exists, name


def test_transparent_huge_pages_unit_is_enabled(host):
    unit = host.file("/etc/systemd/system/hub-transparent-hugepages.service")
    assert "echo never > /sys/kernel/mm/transparent_hugepage/enabled" in unit.content_string
    assert host.service("hub-transparent-hugepages").is_enabled


def test_time_zone_is_seoul(host):
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Asia/Seoul"
    assert host.run("date +%Z").stdout.strip() == "KST"


def test_time_sync_is_enabled(host):
    assert host.service("systemd-timesyncd").is_enabled


def test_locales_are_generated(host):
    locales = host.run("locale -a").stdout.split()
    assert "ko_KR.utf8" in locales
    assert "en_US.utf8" in locales


def test_firewall_is_loaded_with_default_drop(host):
    assert host.service("nftables").is_enabled
    ruleset = host.run("nft list table inet hub_filter")
    assert ruleset.rc == 0, ruleset.stderr
    text = ruleset.stdout
    # The input chain's own policy (not any "policy drop" in the table: forward has one too).
    chains = dict(re.findall(r"chain (\w+) \{\s*type filter hook \w+ priority \w+; policy (\w+);", text))
    assert chains.get("input") == "drop", chains
    assert chains.get("forward") == "drop", chains
    assert "10.20.0.0/16" in text
    assert "172.16.0.0/12" in text
    assert "2001:db8::/32" in text
    assert "10.9.8.7" in text  # a single administrator's address (/32) is a network too
    assert "tcp dport 5432 ip saddr @postgresql_v4 accept" in text
    assert "tcp dport 22 ip saddr @ssh_v4 accept" in text


def test_repo1_volume_is_its_own_file_system_mounted_by_uuid(host):
    device = host.ansible.get_variables()["hub_test_repo1_device"]
    probe = host.run("blkid -p -o export %s", device).stdout.splitlines()
    assert "TYPE=ext4" in probe and "LABEL=hub_repo1" in probe
    uuid = host.run("blkid -p -s UUID -o value %s", device).stdout.strip()
    assert uuid
    fstab = [line.split() for line in host.file("/etc/fstab").content_string.splitlines()]
    assert [f for f in fstab if f and f[0] == f"UUID={uuid}"] == [
        [f"UUID={uuid}", "/var/lib/pgbackrest", "ext4", "noatime", "0", "2"]]
    mount = host.mount_point("/var/lib/pgbackrest")
    assert mount.exists and mount.device == device
    # A file written there lands on repo1's volume, not on the data volume or the root.
    host.run("touch /var/lib/pgbackrest/.probe")
    try:
        assert host.run("findmnt -no SOURCE -T /var/lib/pgbackrest/.probe").stdout.strip() == device
    finally:
        host.run("rm -f /var/lib/pgbackrest/.probe")
