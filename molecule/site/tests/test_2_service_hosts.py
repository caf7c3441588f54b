"""The off-site host (the monitoring host too, in this scenario) under the host role's profile
`service`: no data volume and no PostgreSQL kernel settings, and a firewall whose every port
admits only the hosts that use it. Each check connects from a real neighbour: the hub, and the
drill host (a fresh container until test_7 builds it, which never needs SSH or the exporter)."""

import pytest

SYSCTL = "/etc/sysctl.d/60-hub-postgresql.conf"


def reaches(source, target_name: str, port: int) -> bool:
    """A TCP connection from `source` to target_name:port opens within 5 s. A port the firewall
    drops times out; one that is open but refused would fail at once."""
    return source.run(f"timeout 5 bash -c '</dev/tcp/{target_name}/{port}'").rc == 0


def test_the_offsite_host_has_the_firewall_and_nothing_for_postgresql(offsite):
    table = offsite.run("nft list table inet hub_filter")
    assert table.rc == 0 and "policy drop" in table.stdout, table.stdout + table.stderr
    assert offsite.service("nftables").is_enabled
    assert "Profile service" in offsite.file("/etc/nftables.conf").content_string
    assert not offsite.file(SYSCTL).exists
    assert offsite.run("findmnt -n /var/lib/postgresql").rc != 0


@pytest.mark.parametrize("port, from_hub, from_drill", [
    (8432, True, True),     # pgBackRest's TLS server: the hub's WAL, the drill's restore
    (22, True, False),      # SSH: the hub's cold copies (and the administrators')
    (9100, False, False),   # node exporter: the monitoring host only (this host itself)
])
def test_each_offsite_port_admits_only_the_hosts_that_use_it(hub, offsite, target, port, from_hub, from_drill):
    name = offsite.backend.get_hostname()
    assert reaches(hub, name, port) is from_hub
    assert reaches(target, name, port) is from_drill
    # Every port listens: the monitoring host (this one) reaches the exporter, the hub the others.
    assert reaches(offsite if port == 9100 else hub, name, port)
