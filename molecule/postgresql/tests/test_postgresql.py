"""What an operator checks on a freshly built hub database server."""

import re

from conftest import psql, psql_as

LOGIN_ROLES = ["hub_app", "hub_maint", "hub_monitor", "hub_readonly"]


def test_cluster_service_runs_and_starts_at_boot(host, version):
    service = host.service(f"postgresql@{version}-main")
    assert service.is_running
    assert service.is_enabled
    assert host.service("postgresql").is_enabled


def test_server_listens_on_localhost_only(host):
    assert psql(host, "SHOW listen_addresses", db="postgres") == "localhost"
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert not host.socket("tcp://0.0.0.0:5432").is_listening


def test_data_directory_is_on_the_mounted_data_volume(host, version):
    data_dir = psql(host, "SHOW data_directory", db="postgres")
    assert data_dir == f"/var/lib/postgresql/{version}/main"
    device = host.ansible.get_variables()["hub_test_data_device"]
    mount = host.run("findmnt -no TARGET,SOURCE,FSTYPE,OPTIONS -T %s", data_dir).stdout.split()
    assert mount[0] == "/var/lib/postgresql"
    assert mount[1] == device
    assert mount[2] == "ext4"
    assert "noatime" in mount[3].split(",")
    assert host.file(data_dir).user == "postgres"
    assert host.file(data_dir).mode == 0o700


def test_data_checksums_are_on(host):
    assert psql(host, "SHOW data_checksums", db="postgres") == "on"


def test_lz4_compresses_toasted_values_and_wal(host):
    assert psql(host, "SHOW default_toast_compression", db="postgres") == "lz4"
    assert psql(host, "SHOW wal_compression", db="postgres") == "lz4"
    # A 100 kB compressible value is TOASTed: the column must report lz4, and be smaller on disk.
    out = psql(
        host,
        "CREATE TEMP TABLE t (v text); "
        "INSERT INTO t SELECT string_agg(md5(i::text), '') FROM generate_series(1, 100) i, "
        "generate_series(1, 32); "
        "SELECT pg_column_compression(v) || ' ' || (pg_column_size(v) < octet_length(v)) FROM t",
        db="postgres",
    )
    assert out == "lz4 true"


def test_archiving_is_left_off_until_the_backup_role_sets_it(host):
    assert psql(host, "SHOW archive_mode", db="postgres") == "off"


def test_slow_queries_are_logged_and_statements_tracked(host):
    assert psql(host, "SHOW log_min_duration_statement", db="postgres") == "1s"
    assert "pg_stat_statements" in psql(host, "SHOW shared_preload_libraries", db="postgres")
    assert psql(host, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") == "1"


def test_passwords_are_stored_as_scram(host):
    assert psql(host, "SHOW password_encryption", db="postgres") == "scram-sha-256"
    rows = psql(
        host,
        "SELECT rolname || ' ' || left(rolpassword, 14) FROM pg_authid "
        "WHERE rolname LIKE 'hub\\_%' AND rolcanlogin ORDER BY 1",
        db="postgres",
    ).splitlines()
    # hub_replicator too: the scenario gives it a password, as a site with a standby does.
    assert rows == [f"{role} SCRAM-SHA-256$" for role in LOGIN_ROLES + ["hub_replicator"]]


def test_role_passwords_reach_neither_statistics_nor_the_log(host, version):
    # pg_monitor members read pg_stat_statements; a CREATE/ALTER ROLE ... PASSWORD recorded there
    # would hand them every login role's password.
    # (PostgreSQL 16+ replaces the literal with $1, 15 keeps it: neither may be recorded at all.)
    recorded = psql(host, "SELECT count(*) FROM pg_stat_statements WHERE query ~* '(create|alter) (role|user) .* password'")
    assert recorded == "0"
    log = host.run("grep -ci \"password '\" /var/log/postgresql/postgresql-%s-main.log", version)
    assert log.stdout.strip() == "0"


def test_hba_has_no_trust_md5_or_password_rule(host):
    methods = psql(host, "SELECT DISTINCT auth_method FROM pg_hba_file_rules ORDER BY 1", db="postgres")
    assert set(methods.splitlines()) == {"peer", "reject", "scram-sha-256"}
    assert psql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL", db="postgres") == "0"
    # Password logins only over TLS.
    assert psql(
        host,
        "SELECT count(*) FROM pg_hba_file_rules WHERE auth_method = 'scram-sha-256' AND type <> 'hostssl'",
        db="postgres",
    ) == "0"


def test_app_role_connects_over_tls_with_its_password(host):
    result = psql_as(host, "hub_app", "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    assert result.rc == 0, result.stderr
    ssl, protocol = result.stdout.strip().split("|")
    assert ssl == "t"
    assert protocol in {"TLSv1.2", "TLSv1.3"}


def test_every_login_role_can_log_in(host):
    for role in LOGIN_ROLES:
        result = psql_as(host, role, "SELECT current_user")
        assert result.rc == 0, f"{role}: {result.stderr}"
        assert result.stdout.strip() == role


def test_connections_without_tls_are_refused(host):
    result = psql_as(host, "hub_app", "SELECT 1", sslmode="disable")
    assert result.rc != 0
    assert re.search(r"pg_hba\.conf rejects connection|no pg_hba\.conf entry", result.stderr)


def test_superuser_cannot_log_in_over_the_network(host):
    host.run("sudo -u postgres psql -XAtq -c %s", "ALTER ROLE postgres PASSWORD NULL")
    result = host.run("psql -XAtq 'host=127.0.0.1 user=postgres dbname=postgres sslmode=require' -c 'SELECT 1'")
    assert result.rc != 0
    assert "rejects connection" in result.stderr


def test_app_role_cannot_create_in_schema_public(host):
    result = psql_as(host, "hub_app", "CREATE TABLE public.should_not_exist (i int)")
    assert result.rc != 0
    assert "permission denied for schema public" in result.stderr


def test_monitor_role_reads_statistics(host):
    result = psql_as(host, "hub_monitor", "SELECT pg_has_role('hub_monitor', 'pg_monitor', 'member')")
    assert result.rc == 0, result.stderr
    assert result.stdout.strip() == "t"


def test_tls_key_and_config_files_are_private(host, version):
    key = host.file(f"/etc/postgresql/{version}/main/tls/server.key")
    assert key.user == "postgres" and key.mode == 0o600
    conf = host.file(f"/etc/postgresql/{version}/main/conf.d/50-hub.conf")
    assert conf.user == "postgres" and conf.mode == 0o640
    hba = host.file(f"/etc/postgresql/{version}/main/pg_hba.conf")
    assert hba.mode == 0o640
    # The certificate is the host's own, not Debian's snakeoil.
    assert "snakeoil" not in psql(host, "SHOW ssl_cert_file", db="postgres")
