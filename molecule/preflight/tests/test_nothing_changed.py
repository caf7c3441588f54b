"""After every refused input, the host is as it was: no package, file or mount of the roles."""


def test_foreign_file_system_is_untouched(host):
    device = host.ansible.get_variables()["hub_test_data_device"]
    probe = host.run("blkid -p -o export %s", device).stdout.splitlines()
    assert "TYPE=ext4" in probe
    assert "LABEL=foreign_data" in probe
    assert not host.mount_point("/var/lib/postgresql").exists


def test_the_repository_on_the_root_file_system_is_still_in_view(host):
    # The refused repo1 volume was neither made nor mounted over the existing repository.
    device = host.ansible.get_variables()["hub_test_repo1_device"]
    assert host.run("blkid -p -o export %s", device).stdout.strip() == ""
    assert not host.mount_point("/var/lib/pgbackrest").exists
    assert host.file("/var/lib/pgbackrest/backup/hub/backup.info").contains("must not hide")


def test_no_package_of_the_roles_was_installed(host):
    for name in ["nftables", "postgresql-common", "locales", "systemd-timesyncd"]:
        assert not host.package(name).is_installed, name


def test_no_configuration_was_written(host):
    assert "/var/lib/postgresql" not in host.file("/etc/fstab").content_string
    assert not host.file("/etc/sysctl.d/60-hub-postgresql.conf").exists
    assert not host.file("/etc/postgresql-common/createcluster.conf").exists
    assert not host.file("/etc/systemd/system/hub-transparent-hugepages.service").exists
    # The zone is /etc/localtime's link (Debian 12's timedated writes no /etc/timezone).
    assert "Asia/Seoul" not in host.check_output("readlink -f /etc/localtime")
    assert not host.file("/etc/timezone").exists or "Asia/Seoul" not in host.file("/etc/timezone").content_string
