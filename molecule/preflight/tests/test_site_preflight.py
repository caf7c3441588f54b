"""site.yml checks every role's inputs before the first role changes anything.

A bad input for the postgresql role (a missing vault password) must stop site.yml before the
host role formats a disk, installs a package or loads a firewall on this fresh host.
"""

from conftest import ansible_playbook


def test_site_stops_on_a_later_roles_bad_input_before_changing_the_host(host):
    rc, output = ansible_playbook("site.yml", "-e", "postgresql_hub_app_password=", "-e", "host_data_device=",
                                  timeout=600)
    assert rc != 0, output
    assert "postgresql_hub_app_password is missing" in output
    # The failure came from the preflight play: no task of the build play ran.
    assert "Install the base packages the host needs" not in output
    assert "TASK [host : Install the packages the host role manages]" not in output
    assert not host.package("nftables").is_installed
    assert not host.file("/etc/sysctl.d/60-hub-postgresql.conf").exists
