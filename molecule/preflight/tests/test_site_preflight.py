"""site.yml checks every role's inputs before the first role changes anything.

A bad input for the postgresql role (a missing vault password) must stop site.yml before the
host role formats a disk, installs a package or loads a firewall on this fresh host.
"""

from conftest import ansible_playbook, assert_nothing_changed


def test_site_stops_on_a_later_roles_bad_input_before_changing_the_host(host):
    rc, output = ansible_playbook("site.yml", "-e", "postgresql_hub_app_password=", "-e", "host_data_device=",
                                  timeout=600)
    assert rc != 0, output
    assert "postgresql_hub_app_password is missing" in output
    # The failure came from the preflight play: the build plays never started (Ansible prints
    # a play's header as it starts it), and the recap has nothing changed.
    assert "PLAY [Check the inputs of every role before the hub's server changes]" in output
    assert "PLAY [Build the hub's PostgreSQL server]" not in output
    assert "PLAY [Build the off-site backup repository]" not in output
    assert_nothing_changed(output)
    assert not host.package("nftables").is_installed
    assert not host.file("/etc/sysctl.d/60-hub-postgresql.conf").exists
