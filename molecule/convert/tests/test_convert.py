"""Converting the seed's plain v1_hub_work_allocations while the application writes to it.

The tests run in file order, each phase as an operator runs it (ansible-playbook
playbooks/migrate-partitioned.yml -e hub_convert_phase=...), with inserter.sh writing to the table
throughout: inserts, updates and deletes from two sessions of hub_app over TLS. After each phase
the inserter is stopped and the data checked: every key it inserted is in the table the
application uses, and that table holds exactly the seed's rows plus those inserted minus those
deleted. While both tables exist, their per-day counts and checksums are compared.
"""

import re
import time
from pathlib import Path

import pytest
from conftest import HUBCTL, PROJECT, SECRETS, ansible_playbook, assert_nothing_changed, flat, psql, secret

HERE = Path(__file__).resolve().parent
PLAYBOOK = "playbooks/migrate-partitioned.yml"
SEED_ROWS = 200000
PGPASS = "/var/tmp/pgpass-inserter"
LOG = "/var/log/hub/convert.log"

# What the inserters did, over all the tests: keys inserted (client 'inserter') and seed rows
# deleted; and rows the tests wrote themselves (client 'edge').
WRITES = {"inserted": set(), "deleted": set(), "edge": 0}
# Rows dated outside the months the conversion makes, and in the month it leaves to pg_partman.
EDGE_DAYS = {
    "long ago": "DATE '1999-01-15'",
    "far ahead": "DATE '2099-01-15'",
    "today + 4 months": "(date_trunc('month', CURRENT_DATE) + interval '4 months')::date + 9",
}

# The common columns in the new table's order, rendered with the new table's types: the same
# text from either table (the legacy one has other types and another column order).
ROW = ("ROW(allocation_key, allocated_at, finished_at, work_date, execution_time_ms, "
       "proxy_id::smallint, status::text, client_id::text, keyword::text)::text")
PER_DAY = ("SELECT string_agg(concat_ws(' ', work_date, n, s), ',' ORDER BY work_date) FROM ("
           "SELECT work_date, count(*) AS n, sum(('x' || substr(md5(" + ROW + "), 1, 15))::bit(60)::bigint) AS s "
           "FROM {table} GROUP BY 1) AS d")


def phase(name: str):
    return ansible_playbook(PLAYBOOK, "-e", f"hub_convert_phase={name}", timeout=1800)


class Inserter:
    """inserter.sh on the host, from start to stop, and what it wrote."""

    def __init__(self, host, tag: str):
        self.host, self.tag = host, tag

    def __enter__(self):
        local = SECRETS / "pgpass-inserter"
        local.touch(mode=0o600)
        local.write_text(f"127.0.0.1:*:*:hub_app:{secret('hub_app')}\n")
        self.host.ansible("ansible.builtin.copy", f"src={local} dest={PGPASS} mode=0600", check=False)
        self.host.ansible("ansible.builtin.copy", f"src={HERE / 'inserter.sh'} dest=/var/tmp/inserter.sh mode=0755",
                          check=False)
        started = self.host.run(
            f"setsid nohup /var/tmp/inserter.sh {self.tag} {PGPASS} > /dev/null 2>&1 < /dev/null &")
        assert started.rc == 0, started.stderr
        # Wait until it writes, so the phase runs under load from its first step.
        for _ in range(60):
            if int(self.host.run(f"cat /var/tmp/inserter-{self.tag}-*.keys 2>/dev/null | wc -l").stdout or 0) >= 20:
                return self
            time.sleep(0.5)
        pytest.fail("the inserter did not start writing: "
                    + self.host.run(f"cat /var/tmp/inserter-{self.tag}-*.errors").stdout)

    def __exit__(self, *exc):
        stop = self.host.run(
            f"touch /var/tmp/inserter-{self.tag}.stop; pid=$(cat /var/tmp/inserter-{self.tag}.pid); "
            "for i in $(seq 120); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.5; done; exit 1")
        assert stop.rc == 0, "the inserter did not stop"
        out = self.host.run(f"cat /var/tmp/inserter-{self.tag}-*.keys").stdout.split()
        self.inserted = set(out[i + 1] for i in range(0, len(out), 2) if out[i] == "inserted")
        self.deleted = set(out[i + 1] for i in range(0, len(out), 2) if out[i] == "deleted")
        self.errors = self.host.run(f"cat /var/tmp/inserter-{self.tag}-*.errors").stdout.strip()
        WRITES["inserted"] |= self.inserted
        WRITES["deleted"] |= self.deleted
        return False


def assert_application_lost_nothing(host, ins: Inserter, table: str = "public.v1_hub_work_allocations"):
    """No statement of the application failed; every row it inserted is there, and the table holds
    the seed's rows plus those inserted minus those deleted, over every phase so far."""
    assert ins.errors == "", ins.errors
    assert len(ins.inserted) > 100, "the inserter wrote too little to prove anything"
    keys = set(psql(host, f"SELECT allocation_key FROM {table} WHERE client_id = 'inserter'").split())
    assert keys == WRITES["inserted"]
    total = int(psql(host, f"SELECT count(*) FROM {table}"))
    assert total == SEED_ROWS + len(WRITES["inserted"]) - len(WRITES["deleted"]) + WRITES["edge"]


def assert_days_agree(host, legacy: str, new: str):
    assert psql(host, PER_DAY.format(table=f"ONLY {legacy}")) == psql(host, PER_DAY.format(table=new))


def relkind(host, name="public.v1_hub_work_allocations"):
    return psql(host, f"SELECT relkind FROM pg_class WHERE oid = to_regclass('{name}')")


def lock_held_ms(host, step: str) -> int:
    lines = [line for line in host.file(LOG).content_string.splitlines() if f" step={step} " in line]
    assert lines, f"no step={step} line in {LOG}"
    return int(re.search(r"\block_held_ms=(\d+)", lines[-1]).group(1))


@pytest.fixture(scope="module", autouse=True)
def remove_the_inserters_password(host):
    yield
    host.run(f"rm -f {PGPASS}")


# --------------------------------------------------------------------------- the starting point

def test_site_yml_stops_at_migration_0001_and_points_to_the_playbook(host):
    # The schema part of site.yml, as on the seed-era server (pgBackRest needs its off-site host).
    rc, out = ansible_playbook("site.yml", "--tags", "hub_schema", "--skip-tags", "pgbackrest")
    assert rc != 0, out
    assert "public.v1_hub_work_allocations already exists and was not made by these migrations" in out
    assert "playbooks/migrate-partitioned.yml" in out
    assert psql(host, "SELECT count(*) FROM hub_schema_migrations") == "0"
    assert relkind(host) == "r"


def test_a_missing_or_unknown_phase_is_refused_and_changes_nothing(host):
    rc, out = ansible_playbook(PLAYBOOK)
    assert rc != 0 and "hub_convert_phase is missing" in out, out
    rc, out = phase("swap")
    assert rc != 0 and "swap cannot run now (stage seed): nothing is prepared: run prepare first" in out, out
    assert psql(host, "SELECT to_regnamespace('hub_convert') IS NULL") == "t"
    assert psql(host, "SELECT relowner::regrole FROM pg_class WHERE oid = 'v1_hub_work_allocations'::regclass") == "hub_seed"


# --------------------------------------------------------------------------- first conversion, rolled back

def test_prepare_copies_and_verifies_while_the_application_writes(host):
    with Inserter(host, "prepare1") as ins:
        rc, out = phase("prepare")
    assert rc == 0, out
    assert "step=copy" in out and "rows_per_s=" in out and "eta_s=" in out
    # The verify line as hubctl wrote it (the playbook's output wraps long lines).
    verify = [line for line in host.file(LOG).content_string.splitlines() if " step=verify " in line]
    assert verify, out
    assert re.search(r"step=verify attempt=\d+ days=\d+ rows=\d+ new_rows=\d+ mismatched_days=0 refused=0", verify[-1]), verify[-1]
    assert_application_lost_nothing(host, ins)
    assert_days_agree(host, "public.v1_hub_work_allocations", "hub_convert.v1_hub_work_allocations")
    # The legacy table is still the application's, now owned by hub_owner; its first owner keeps
    # its privileges, and the new tables have those of a table made by site.yml.
    assert relkind(host) == "r"
    assert psql(host, "SELECT relowner::regrole FROM pg_class WHERE oid = 'v1_hub_work_allocations'::regclass") == "hub_owner"
    assert psql(host, "SELECT has_table_privilege('hub_seed', 'v1_hub_work_allocations', 'INSERT')") == "t"
    assert psql(host, "SELECT has_table_privilege('hub_readonly', 'hub_convert.v1_hub_work_allocations', 'SELECT')") == "t"


def test_swap_holds_its_lock_briefly_and_loses_no_write(host):
    with Inserter(host, "swap1") as ins:
        rc, out = phase("swap")
    assert rc == 0, out
    held = lock_held_ms(host, "swap")
    assert 0 < held < 15000, f"the swap held its lock for {held} ms"
    assert relkind(host) == "p"
    assert relkind(host, "public.v1_hub_work_allocations_legacy") == "r"
    assert psql(host, "SELECT name FROM hub_schema_migrations") == "0001_live_tables.sql"
    assert_application_lost_nothing(host, ins)
    # Writes on the new table were repeated on the legacy one, for a rollback.
    assert_days_agree(host, "public.v1_hub_work_allocations_legacy", "public.v1_hub_work_allocations")


def test_rollback_after_the_swap_gives_back_the_legacy_table_with_every_row(host):
    with Inserter(host, "rollback1") as ins:
        rc, out = phase("rollback")
    assert rc == 0, out
    assert relkind(host) == "r"
    assert_application_lost_nothing(host, ins)
    assert psql(host, "SELECT relowner::regrole FROM pg_class WHERE oid = 'v1_hub_work_allocations'::regclass") == "hub_seed"
    assert psql(host, "SELECT to_regnamespace('hub_convert') IS NULL") == "t"
    assert psql(host, "SELECT count(*) FROM hub_schema_migrations") == "0"
    assert psql(host, "SELECT count(*) FROM pg_class "
                      "WHERE relname ~ '^v1_hub_work_allocations_(p[0-9]|convert|legacy|default)'") == "0"
    indexes = psql(host, "SELECT string_agg(indexrelid::regclass::text, ' ' ORDER BY 1) FROM pg_index "
                         "WHERE indrelid = 'v1_hub_work_allocations'::regclass").split()
    assert sorted(indexes) == ["idx_allocations_lookup", "idx_allocations_recent", "v1_hub_work_allocations_pkey"]


# --------------------------------------------------------------------------- second conversion, to the end

def test_prepare_swap_and_finalize_with_the_application_writing(host):
    values = ", ".join(f"('edge', '{name}', {day})" for name, day in EDGE_DAYS.items())
    psql(host, ["SET ROLE hub_app", f"INSERT INTO v1_hub_work_allocations (client_id, keyword, work_date) VALUES {values}"])
    WRITES["edge"] += len(EDGE_DAYS)
    for name in ("prepare", "swap"):
        with Inserter(host, f"{name}2") as ins:
            rc, out = phase(name)
        assert rc == 0, f"{name}: {out}"
        assert_application_lost_nothing(host, ins)
    # This server has no pgBackRest (as a seed-era server may not): finalize would drop the only
    # copy of the rows as they were, so it refuses, and the legacy table stays.
    rc, out = phase("finalize")
    assert rc != 0, out
    assert "no backup of the database finished after the swap" in flat(out), out[-3000:]
    assert "pgBackRest could not be asked" in flat(out)
    assert relkind(host, "public.v1_hub_work_allocations_legacy") == "r"
    # A dump older than the swap is refused too; one written after it lets finalize go on.
    dump = "/var/tmp/hub-after-swap.dump"
    made = host.run(f"sudo -u postgres pg_dump -Fc -d hub -f {dump} && chmod 0644 {dump}")
    assert made.rc == 0, made.stderr
    host.run(f"touch -d '2 days ago' {dump}")
    rc, out = ansible_playbook(PLAYBOOK, "-e", "hub_convert_phase=finalize", "-e", f"hub_convert_finalize_dump={dump}")
    assert rc != 0 and "before the swap" in flat(out), out[-3000:]
    assert relkind(host, "public.v1_hub_work_allocations_legacy") == "r"
    host.run(f"touch {dump}")
    with Inserter(host, "finalize2") as ins:
        rc, out = ansible_playbook(PLAYBOOK, "-e", "hub_convert_phase=finalize",
                                   "-e", f"hub_convert_finalize_dump={dump}", timeout=1800)
    assert rc == 0, f"finalize: {out}"
    assert f"step=backup_gate dump={dump}" in out
    assert_application_lost_nothing(host, ins)
    host.run(f"rm -f {dump}")
    assert relkind(host) == "p"
    assert psql(host, "SELECT to_regnamespace('hub_convert') IS NULL") == "t"
    assert relkind(host, "public.v1_hub_work_allocations_legacy") == ""


def test_every_migration_is_recorded_after_finalize(host):
    files = sorted(p.name for p in (PROJECT / "files" / "sql" / "migrations").glob("*.sql"))
    assert psql(host, "SELECT name FROM hub_schema_migrations ORDER BY version").splitlines() == files


def test_pg_partman_adopted_the_months_and_made_its_default_partition(host):
    assert psql(host, "SELECT count(*) FROM partman.part_config WHERE parent_table = 'public.v1_hub_work_allocations'") == "1"
    children = psql(host, "SELECT string_agg(c.relname || '=' || pg_get_expr(c.relpartbound, c.oid), ',') "
                          "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                          "WHERE i.inhparent = 'v1_hub_work_allocations'::regclass").split(",")
    named = dict(child.split("=", 1) for child in children)
    assert named.pop("v1_hub_work_allocations_default") == "DEFAULT"
    assert not [n for n in named if "convert" in n], named
    major = int(psql(host, "SELECT split_part(extversion, '.', 1) FROM pg_extension WHERE extname = 'pg_partman'"))
    pattern = r"^v1_hub_work_allocations_p\d{4}_\d{2}$" if major == 4 else r"^v1_hub_work_allocations_p\d{6}01$"
    assert all(re.match(pattern, n) for n in named), named
    # partman lists them as its own
    listed = psql(host, "SELECT count(*) FROM partman.show_partitions('public.v1_hub_work_allocations')")
    assert int(listed) == len(named)
    # the oldest seed row is in a month of its own, not in the default partition
    oldest = psql(host, "SELECT tableoid::regclass FROM v1_hub_work_allocations WHERE client_id <> 'edge' "
                        "ORDER BY work_date LIMIT 1")
    assert oldest in named


def test_rows_outside_the_months_end_where_site_yml_would_put_them(host):
    landed = dict(line.split("|") for line in psql(
        host, "SELECT keyword, tableoid::regclass FROM v1_hub_work_allocations WHERE client_id = 'edge'").splitlines())
    assert landed["long ago"] == landed["far ahead"] == "v1_hub_work_allocations_default"
    assert landed["today + 4 months"] in psql(host, "SELECT string_agg(partition_tablename, ' ') FROM "
                                                    "partman.show_partitions('public.v1_hub_work_allocations')").split()
    # Rows in the default partition are an operator's matter (hubctl reports them); remove them.
    psql(host, "DELETE FROM v1_hub_work_allocations WHERE client_id = 'edge' AND keyword <> 'today + 4 months'")
    WRITES["edge"] -= 2


def test_partition_maintenance_works_on_the_converted_table(host):
    result = host.run(f"{HUBCTL} partitions")
    assert result.rc == 0, result.stdout + result.stderr
    assert "table=v1_hub_work_allocations" in result.stdout


def test_site_yml_changes_nothing_after_the_conversion(host):
    # The roles the conversion applied, as site.yml runs them (the host and postgresql roles are
    # the converge's; pgBackRest needs the off-site host and has its own scenario).
    rc, out = ansible_playbook("site.yml", "--tags", "hub_schema,maintenance", "--skip-tags", "pgbackrest")
    assert rc == 0, out
    assert_nothing_changed(out)


def test_a_phase_after_the_conversion_has_nothing_to_convert(host):
    rc, out = phase("prepare")
    assert rc != 0 and "Nothing to convert" in out, out
    assert psql(host, "SELECT to_regnamespace('hub_convert') IS NULL") == "t"
