"""The CIS PostgreSQL Benchmark items the postgresql role meets (docs/security.md gives the table,
item by item): each setting's value on the running server, and where it has an effect a client
can see, that effect. Removing a protection from the role makes one of these fail."""

import json
import time

import pytest
from conftest import ansible_playbook, psql, psql_as

CA = "/etc/postgresql/hub-server-ca.crt"
VERIFY_FULL = f"sslrootcert={CA} channel_binding=require"

# CIS item (docs/security.md) -> setting -> the value the server must report.
SETTINGS = {
    "1.3 data_directory_mode": ("data_directory_mode", "0700"),
    "3.1.2 log_destination": ("log_destination", "stderr"),
    "3.1.14 log_min_messages": ("log_min_messages", "warning"),
    "3.1.15 log_min_error_statement": ("log_min_error_statement", "error"),
    "3.1.16 debug_print_parse": ("debug_print_parse", "off"),
    "3.1.17 debug_print_rewritten": ("debug_print_rewritten", "off"),
    "3.1.18 debug_print_plan": ("debug_print_plan", "off"),
    "3.1.19 debug_pretty_print": ("debug_pretty_print", "on"),
    "3.1.20 log_connections": ("log_connections", "on"),
    "3.1.21 log_disconnections": ("log_disconnections", "on"),
    "3.1.22 log_error_verbosity": ("log_error_verbosity", "verbose"),
    "3.1.23 log_hostname": ("log_hostname", "off"),
    "3.1.25 log_statement": ("log_statement", "ddl"),
    "3.1.26 log_timezone": ("log_timezone", "UTC"),
    "3.2 pgaudit.log": ("pgaudit.log", "ddl, role"),
    "5.2 password_encryption": ("password_encryption", "scram-sha-256"),
    "5.x authentication_timeout": ("authentication_timeout", "30"),
    "5.x auth_delay.milliseconds": ("auth_delay.milliseconds", "1000"),
    "6.8 ssl": ("ssl", "on"),
    "6.9 ssl_min_protocol_version": ("ssl_min_protocol_version", "TLSv1.2"),
    "6.10 ssl_prefer_server_ciphers": ("ssl_prefer_server_ciphers", "on"),
    "7.2 log_replication_commands": ("log_replication_commands", "on"),
}


def server_log(host, version) -> str:
    return host.file(f"/var/log/postgresql/postgresql-{version}-main.log").content_string


@pytest.mark.parametrize("item", sorted(SETTINGS))
def test_the_cis_setting_is_in_force(host, item):
    name, expected = SETTINGS[item]
    assert psql(host, f"SELECT setting FROM pg_settings WHERE name = '{name}'", db="postgres") == expected


def test_the_server_log_is_readable_by_postgres_and_adm_only(host, version):
    # 3.1.3-3.1.9: Debian's pg_ctlcluster writes the server's stderr to this file, and
    # postgresql-common's logrotate rotates it (docs/security.md).
    log = host.file(f"/var/log/postgresql/postgresql-{version}-main.log")
    assert (log.user, log.group, log.mode) == ("postgres", "adm", 0o640)
    assert "/var/log/postgresql/*.log" in host.file("/etc/logrotate.d/postgresql-common").content_string


def test_pgaudit_and_auth_delay_are_loaded(host):
    loaded = psql(host, "SHOW shared_preload_libraries", db="postgres").replace(" ", "").split(",")
    assert {"pgaudit", "auth_delay"} <= set(loaded)


def test_the_log_line_names_time_process_user_database_application_and_client(host, version):
    prefix = psql(host, "SHOW log_line_prefix", db="postgres")
    for escape in ("%m", "%p", "%u", "%d", "%a", "%h"):
        assert escape in prefix, f"log_line_prefix {prefix!r} lacks {escape}"
    marker = f"cis-login-{time.time_ns()}"
    result = psql_as(host, "hub_readonly", "SELECT 1", conninfo=f"application_name={marker}")
    assert result.rc == 0, result.stderr
    # The application name is in the message of the login line, and in the prefix after it.
    lines = [ln for ln in server_log(host, version).splitlines() if marker in ln]
    assert any("connection authorized: user=hub_readonly" in ln and "hub_readonly@hub" in ln
               and "client=127.0.0.1" in ln and " UTC [" in ln for ln in lines), lines
    assert any("disconnection:" in ln and f"app={marker}" in ln for ln in lines), lines


def test_ddl_and_role_changes_reach_the_server_log_with_pgaudit(host, version):
    table, role = f"cis_probe_{time.time_ns()}", f"cis_probe_role_{time.time_ns()}"
    psql(host, [f"CREATE TABLE {table} (i int)", f"DROP TABLE {table}",
                f"CREATE ROLE {role} NOLOGIN", f"DROP ROLE {role}", f"SELECT count(*) FROM pg_class"],
         db="postgres")
    log = server_log(host, version)
    # log_statement = 'ddl'
    assert f"statement: CREATE TABLE {table}" in log
    # pgaudit: the class and the command, for the table and for the role
    assert any("AUDIT: SESSION," in ln and ",DDL,CREATE TABLE," in ln and table in ln for ln in log.splitlines())
    assert any("AUDIT: SESSION," in ln and ",ROLE,CREATE ROLE," in ln and role in ln for ln in log.splitlines())
    # Reads are not audited (pgaudit.log has no READ class): the log stays readable.
    assert not any("AUDIT:" in ln and "SELECT count(*) FROM pg_class" in ln for ln in log.splitlines())


def test_a_failed_login_waits_before_its_refusal(host):
    start = time.monotonic()
    result = host.run("PGPASSWORD=not-the-password psql -XAtq "
                      "'host=127.0.0.1 dbname=hub user=hub_app sslmode=require' -c 'SELECT 1'")
    waited = time.monotonic() - start
    assert result.rc != 0 and "password authentication failed" in result.stderr
    # auth_delay holds the refusal for 1000 ms; without it the refusal takes milliseconds.
    assert waited >= 1.0, f"the refusal came after {waited:.2f} s"


# A TLS 1.2 client that offers only `suite`: the server's answer to the handshake.
HANDSHAKE = """
import socket, ssl, struct, sys
s = socket.create_connection(("127.0.0.1", 5432), timeout=10)
s.sendall(struct.pack("!II", 8, 80877103))
assert s.recv(1) == b"S"
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers(sys.argv[1])
try:
    print("accepted", ctx.wrap_socket(s).cipher()[0])
except ssl.SSLError as e:
    print("refused", e.reason)
"""


def handshake(host, suite: str) -> str:
    host.run(f"cat > /var/tmp/cis_handshake.py <<'EOF'\n{HANDSHAKE}\nEOF")
    return host.run(f"python3 /var/tmp/cis_handshake.py {suite}").stdout.strip()


def test_tls12_offers_only_forward_secret_aead_suites(host):
    assert handshake(host, "ECDHE-ECDSA-AES256-GCM-SHA384") == "accepted ECDHE-ECDSA-AES256-GCM-SHA384"
    # CBC with a SHA-1 MAC: in OpenSSL's HIGH set, which PostgreSQL's default ssl_ciphers allows.
    assert handshake(host, "ECDHE-ECDSA-AES128-SHA").startswith("refused")
    assert handshake(host, "ECDHE-ECDSA-AES256-SHA384").startswith("refused")


def test_clients_verify_the_servers_name_with_channel_binding(host):
    ca, cert = host.file(CA), host.file(psql(host, "SHOW ssl_cert_file", db="postgres"))
    assert ca.user == "root" and ca.mode == 0o644
    assert ca.content_string == cert.content_string, "a generated certificate is its own CA"
    result = psql_as(host, "hub_maint", "SELECT 1", sslmode="verify-full", conninfo=VERIFY_FULL)
    assert result.rc == 0, result.stderr
    # The same server under a name its certificate does not carry: refused before the login.
    wrong = host.run(f"psql -XAtq 'host=hub-db-unlisted.invalid hostaddr=127.0.0.1 dbname=hub "
                     f"user=hub_maint sslmode=verify-full {VERIFY_FULL}' -c 'SELECT 1'")
    assert wrong.rc != 0 and "does not match host name" in wrong.stderr, wrong.stderr


def test_each_role_has_its_connection_limit(host):
    rows = psql(host, "SELECT rolname || '=' || rolconnlimit FROM pg_roles WHERE rolname LIKE 'hub\\_%' "
                      "AND rolcanlogin OR rolname = 'hub_replicator' ORDER BY 1", db="postgres").split()
    assert rows == ["hub_app=60", "hub_maint=15", "hub_monitor=5", "hub_readonly=10", "hub_replicator=2"]


def test_no_login_role_but_the_owners_member_can_create_objects(host):
    for role in ("hub_app", "hub_readonly", "hub_monitor", "hub_replicator"):
        row = psql(host, f"SELECT has_database_privilege('{role}', 'hub', 'CREATE'), "
                         f"has_database_privilege('{role}', 'hub', 'TEMPORARY'), "
                         f"has_schema_privilege('{role}', 'public', 'CREATE'), "
                         f"rolcreatedb, rolcreaterole, rolsuper FROM pg_roles WHERE rolname = '{role}'")
        assert row == "f|f|f|f|f|f", f"{role}: {row}"
    assert psql(host, "SELECT has_schema_privilege('hub_owner', 'public', 'CREATE')") == "t"


def test_the_replication_role_replicates_and_does_nothing_else(host):
    attrs = psql(host, "SELECT rolreplication, rolsuper, rolcanlogin FROM pg_roles WHERE rolname = 'hub_replicator'",
                 db="postgres")
    assert attrs == "t|f|t"
    stream = psql_as(host, "hub_replicator", "IDENTIFY_SYSTEM", db="postgres", sslmode="verify-full",
                     conninfo=f"{VERIFY_FULL} replication=true")
    assert stream.rc == 0, stream.stderr
    assert stream.stdout.split("|")[0] == psql(host, "SELECT system_identifier FROM pg_control_system()",
                                               db="postgres")
    for db in ("hub", "postgres"):
        plain = psql_as(host, "hub_replicator", "SELECT 1", db=db)
        assert plain.rc != 0 and "pg_hba.conf rejects connection" in plain.stderr, plain.stderr
    # Without TLS a replication connection finds no rule.
    cleartext = psql_as(host, "hub_replicator", "IDENTIFY_SYSTEM", db="postgres", sslmode="disable",
                        conninfo="replication=true")
    assert cleartext.rc != 0 and "no pg_hba.conf entry for replication connection" in cleartext.stderr


def test_the_postgres_users_login_shell_has_a_private_umask(host):
    assert host.run("runuser -l postgres -c umask").stdout.strip() == "0077"


def test_wal_lives_in_the_data_directory_on_the_data_volume(host):
    data_dir = psql(host, "SHOW data_directory", db="postgres")
    wal = host.file(f"{data_dir}/pg_wal")
    assert wal.is_directory and not wal.is_symlink
    assert host.run("findmnt -no TARGET -T %s/pg_wal", data_dir).stdout.strip() == "/var/lib/postgresql"


CERT_DAYS = """
import datetime, json, sys
from cryptography import x509
cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
start, end = cert.not_valid_before, cert.not_valid_after
print(json.dumps({"days": (end - start).days, "left": (end - datetime.datetime.utcnow()).days,
                  "serial": str(cert.serial_number)}))
"""

SHORT_CERT = """
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
old = x509.load_pem_x509_certificate(open(sys.argv[2], "rb").read())
now = datetime.datetime.utcnow()
cert = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=380)).not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value, False)
        .sign(key, hashes.SHA256()))
open(sys.argv[2], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
"""


def cert_days(host, path: str) -> dict:
    host.run(f"cat > /var/tmp/cis_cert_days.py <<'EOF'\n{CERT_DAYS}\nEOF")
    result = host.run(f"python3 -W ignore /var/tmp/cis_cert_days.py {path}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def test_the_generated_certificate_lives_13_months_and_site_renews_it_before_the_alert(host):
    cert = psql(host, "SHOW ssl_cert_file", db="postgres")
    key = psql(host, "SHOW ssl_key_file", db="postgres")
    assert cert_days(host, cert)["days"] <= 397
    # A certificate with 10 days left (under the 60-day renewal, under the 30-day alert).
    host.run(f"cat > /var/tmp/cis_short_cert.py <<'EOF'\n{SHORT_CERT}\nEOF")
    made = host.run(f"python3 -W ignore /var/tmp/cis_short_cert.py {key} {cert}")
    assert made.rc == 0, made.stderr
    short = cert_days(host, cert)
    assert short["left"] < 11
    rc, output = ansible_playbook("molecule/postgresql/converge.yml",
                                  "--tags", "postgresql_config,postgresql_service", timeout=900)
    assert rc == 0, output[-3000:]
    renewed = cert_days(host, cert)
    assert renewed["serial"] != short["serial"] and renewed["left"] >= 390, renewed
    assert host.file(CA).content_string == host.file(cert).content_string
    # The server reloaded it: a verify-full client accepts the new one.
    result = psql_as(host, "hub_maint", "SELECT 1", sslmode="verify-full", conninfo=VERIFY_FULL)
    assert result.rc == 0, result.stderr
