import builtins

import pytest

from hubctl import config
from hubctl.config import ConfigError, load_config, pgpass_has_entry
from hubctl_testutil import write_config, write_pgpass


def test_good_config_and_defaults(tmp_path):
    path = write_config(tmp_path, jobs="")
    cfg = load_config(path)
    db = cfg.database
    assert (db.host, db.port, db.dbname, db.user, db.sslmode) == (
        "127.0.0.1", 5432, "hub", "hub_maint", "require")
    assert cfg.jobs.lock_dir == "/run/lock/hub"
    assert cfg.jobs.lock_timeout == "5s"
    assert cfg.jobs.alert_command is None
    kwargs = db.connect_kwargs(application_name="hubctl-daily")
    assert kwargs["passfile"] == str(tmp_path / "pgpass")
    assert kwargs["application_name"] == "hubctl-daily"
    assert "password" not in kwargs


def test_jobs_section_values(tmp_path):
    path = write_config(tmp_path, jobs="lock_dir = /tmp/x\nlock_timeout = 750ms\n"
                                       "alert_command = mail -s 'hub %s' ops@example.com\n")
    cfg = load_config(path)
    assert cfg.jobs.lock_dir == "/tmp/x"
    assert cfg.jobs.lock_timeout == "750ms"
    # no interpolation: a % in the command is kept as written
    assert cfg.jobs.alert_command == "mail -s 'hub %s' ops@example.com"


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.conf"))


def test_missing_passfile_is_a_clear_error(tmp_path):
    path = write_config(tmp_path, passfile=str(tmp_path / "missing.pgpass"),
                        jobs=f"lock_dir = {tmp_path}\nalert_command = /bin/true\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert "passfile" in str(exc.value)
    assert str(tmp_path / "missing.pgpass") in str(exc.value)
    assert "does not exist" in str(exc.value)
    # the [jobs] section was readable, so the caller can still alert
    assert exc.value.alert_command == "/bin/true"


def test_unreadable_passfile_is_a_clear_error(tmp_path, monkeypatch):
    pf = write_pgpass(tmp_path / "pgpass")
    path = write_config(tmp_path, passfile=pf)
    real_open = builtins.open

    def fake_open(file, *args, **kwargs):
        if str(file) == pf:
            raise PermissionError(13, "Permission denied", file)
        return real_open(file, *args, **kwargs)

    # root can read any file, so the denial is simulated for the passfile only
    monkeypatch.setattr(config, "open", fake_open, raising=False)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert f"cannot read passfile {pf}" in str(exc.value)
    assert "permission denied" in str(exc.value)


def test_group_readable_passfile_is_refused(tmp_path):
    pf = write_pgpass(tmp_path / "pgpass", mode=0o640)
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, passfile=pf))
    assert "0640" in str(exc.value) and "chmod 0600" in str(exc.value)


def test_passfile_that_is_a_directory(tmp_path):
    d = tmp_path / "dir.pgpass"
    d.mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(write_config(tmp_path, passfile=str(d)))


def test_passfile_without_a_matching_line(tmp_path):
    pf = write_pgpass(tmp_path / "pgpass", "127.0.0.1:5432:hub:hub_app:pw\n")
    with pytest.raises(ConfigError, match=r"no line matching 127\.0\.0\.1:5432:hub:hub_maint"):
        load_config(write_config(tmp_path, passfile=pf))


def test_passfile_not_checked_when_asked(tmp_path):
    cfg = load_config(write_config(tmp_path, passfile=str(tmp_path / "x")), check_passfile=False)
    assert cfg.database.passfile == str(tmp_path / "x")


@pytest.mark.parametrize("extra_db, jobs, fragment", [
    ("password = secret\n", None, "password is not accepted"),
    ("pasfile = /x\n", None, "unknown option 'pasfile'"),
    ("sslmode = sometimes\n", None, "sslmode"),
    ("sslmode = verify-full\n", None, "sslmode verify-full needs sslrootcert"),
    ("channel_binding = maybe\n", None, "channel_binding 'maybe' is not one of"),
    (None, "lock_timeout = soon\n", "lock_timeout"),
    (None, "lock_timeout = 0\n", "greater than 0"),
    (None, "lock_dir = run/lock\n", "absolute path"),
    (None, "retries = 3\n", "unknown option 'retries'"),
])
def test_bad_options(tmp_path, extra_db, jobs, fragment):
    path = write_config(tmp_path, extra_db=extra_db or "", jobs=jobs)
    text = open(path).read()
    if extra_db and extra_db.startswith("sslmode"):
        text = text.replace("sslmode = require\n", "")
        open(path, "w").write(text)
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)


def test_bad_port(tmp_path):
    path = write_config(tmp_path)
    text = open(path).read()
    open(path, "w").write(text.replace("port = 5432", "port = 99999"))
    with pytest.raises(ConfigError, match="not a port number"):
        load_config(path)


def test_missing_required_key(tmp_path):
    path = write_config(tmp_path)
    text = open(path).read()
    open(path, "w").write(text.replace("dbname = hub\n", ""))
    with pytest.raises(ConfigError, match=r"\[database\] dbname is required"):
        load_config(path)


def test_unknown_section_and_bad_ini(tmp_path):
    path = write_config(tmp_path)
    with open(path, "a") as fh:
        fh.write("[job]\nlock_dir = /x\n")
    with pytest.raises(ConfigError, match=r"unknown section \[job\]"):
        load_config(path)
    bad = tmp_path / "bad.conf"
    bad.write_text("host = 127.0.0.1\n")
    with pytest.raises(ConfigError, match="not valid INI"):
        load_config(str(bad))


@pytest.mark.parametrize("text, args, expected", [
    ("127.0.0.1:5432:hub:hub_maint:pw", ("127.0.0.1", 5432, "hub", "hub_maint"), True),
    ("*:*:*:hub_maint:pw", ("db.example", 6432, "hub", "hub_maint"), True),
    ("127.0.0.1:5433:hub:hub_maint:pw", ("127.0.0.1", 5432, "hub", "hub_maint"), False),
    ("127.0.0.1:5432:other:hub_maint:pw", ("127.0.0.1", 5432, "hub", "hub_maint"), False),
    ("# 127.0.0.1:5432:hub:hub_maint:pw", ("127.0.0.1", 5432, "hub", "hub_maint"), False),
    ("127.0.0.1:5432:hub:hub_maint", ("127.0.0.1", 5432, "hub", "hub_maint"), False),
    (r"127.0.0.1:5432:hub:hub_maint:p\:w\\x", ("127.0.0.1", 5432, "hub", "hub_maint"), True),
    (r"h\:x:5432:hub:u:pw", ("h:x", 5432, "hub", "u"), True),
    ("localhost:5432:hub:u:pw", ("/var/run/postgresql", 5432, "hub", "u"), True),
    ("b.example:5432:hub:u:pw", ("a.example,b.example", 5432, "hub", "u"), True),
    ("\n\nx:1:y:z:pw\n127.0.0.1:5432:hub:u:pw\n", ("127.0.0.1", 5432, "hub", "u"), True),
])
def test_pgpass_matching(text, args, expected):
    assert pgpass_has_entry(text, *args) is expected


def test_verify_full_and_channel_binding_reach_libpq(tmp_path):
    path = write_config(tmp_path, extra_db="sslrootcert = /etc/postgresql/hub-server-ca.crt\n"
                                           "channel_binding = require\n")
    text = open(path).read().replace("sslmode = require\n", "sslmode = verify-full\n")
    open(path, "w").write(text)
    kwargs = load_config(path).database.connect_kwargs(application_name="hubctl-test")
    assert kwargs["sslmode"] == "verify-full"
    assert kwargs["sslrootcert"] == "/etc/postgresql/hub-server-ca.crt"
    assert kwargs["channel_binding"] == "require"
