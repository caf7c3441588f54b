"""The configuration file (INI) and the checks that make a bad one fail clearly.

    [database]          libpq connection options; the password comes ONLY from passfile
    host = 127.0.0.1
    port = 5432
    dbname = hub
    user = hub_maint
    sslmode = require
    passfile = /etc/hub/hubctl.pgpass

    [jobs]
    lock_dir = /run/lock/hub               (default)
    alert_command = /usr/local/bin/hub-alert   (optional; run through /bin/sh)
    lock_timeout = 5s                      (default; SET lock_timeout for maintenance)
    archive_after_days = 90                (default; months leave the live tables)
    cold_after_days = 365                  (default; archived months go to files; must be more
                                           than archive_after_days)
    cold_dir = /var/lib/hub/cold           (default; where the cold files are written)

    [capacity]
    volumes = data=/var/lib/postgresql repo1=/var/lib/pgbackrest
                                           (default; the file systems the daily size snapshot
                                           records, NAME=PATH; the projection is about "data")

    [cold]                                 (the off-site copies of the cold files, hubctl/offsite.py)
    offsite = hubcold@offsite.example      (USER@HOST of hub-cold-store; absent or empty: none,
                                           and no month is dropped, as it would have one copy)
    port = 22                              (default)
    ssh_key = /var/lib/hub/.ssh/cold_offsite        (default)
    known_hosts = /var/lib/hub/.ssh/known_hosts     (default; the host's key must be in it)

Later subcommands add their own sections to SECTIONS below.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
import stat

DEFAULT_CONFIG = "/etc/hub/hubctl.conf"
DEFAULT_LOCK_DIR = "/run/lock/hub"
DEFAULT_LOCK_TIMEOUT = "5s"
# Months whose whole range is older than this many days leave the live tables (the seed: 90).
DEFAULT_ARCHIVE_AFTER_DAYS = 90
# Archived months whose whole range is older than this are exported to files and dropped.
DEFAULT_COLD_AFTER_DAYS = 365
DEFAULT_COLD_DIR = "/var/lib/hub/cold"
DEFAULT_CAPACITY_VOLUMES = (("data", "/var/lib/postgresql"), ("repo1", "/var/lib/pgbackrest"))
DEFAULT_PORT = 5432
DEFAULT_COLD_SSH_KEY = "/var/lib/hub/.ssh/cold_offsite"
DEFAULT_COLD_KNOWN_HOSTS = "/var/lib/hub/.ssh/known_hosts"
DEFAULT_SSLMODE = "require"

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# libpq options accepted in [database]; 'password' is refused on purpose.
DATABASE_REQUIRED = ("host", "dbname", "user", "passfile")
DATABASE_OPTIONAL = ("port", "sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                     "channel_binding")
CHANNEL_BINDINGS = ("disable", "prefer", "require")
JOBS_KEYS = ("lock_dir", "alert_command", "lock_timeout", "archive_after_days",
             "cold_after_days", "cold_dir")
# Section name -> allowed keys. A command with options of its own adds its section here.
SECTIONS = {
    "database": DATABASE_REQUIRED + DATABASE_OPTIONAL,
    "jobs": JOBS_KEYS,
    "capacity": ("volumes",),
    "cold": ("offsite", "port", "ssh_key", "known_hosts"),
}
_OFFSITE_RE = re.compile(r"^[a-z_][a-z0-9_-]*@[A-Za-z0-9][A-Za-z0-9.-]*$")
_VOLUME_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

_LOCK_TIMEOUT_RE = re.compile(r"^(\d+)\s*(us|ms|s|min|h|d)?$")
# Unix-socket directories libpq treats as "localhost" when matching a passfile line.
_DEFAULT_SOCKET_DIRS = ("/var/run/postgresql", "/run/postgresql", "/tmp")


class ConfigError(Exception):
    """A configuration problem; the message says what to fix.

    alert_command is set when the [jobs] section could be read, so the caller can still alert.
    """

    def __init__(self, message: str, alert_command: str | None = None):
        super().__init__(message)
        self.alert_command = alert_command


@dataclasses.dataclass(frozen=True)
class DatabaseConfig:
    host: str
    port: int
    dbname: str
    user: str
    sslmode: str
    passfile: str
    extra: tuple = ()  # (key, value) pairs of the optional libpq options

    def connect_kwargs(self, application_name: str) -> dict:
        """Keyword arguments for psycopg2.connect (never a password)."""
        kwargs = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
            "sslmode": self.sslmode,
            "passfile": self.passfile,
            "application_name": application_name,
            "connect_timeout": 10,
        }
        kwargs.update(dict(self.extra))
        return kwargs


@dataclasses.dataclass(frozen=True)
class JobsConfig:
    lock_dir: str = DEFAULT_LOCK_DIR
    alert_command: str | None = None
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    archive_after_days: int = DEFAULT_ARCHIVE_AFTER_DAYS
    cold_after_days: int = DEFAULT_COLD_AFTER_DAYS
    cold_dir: str = DEFAULT_COLD_DIR


@dataclasses.dataclass(frozen=True)
class CapacityConfig:
    volumes: tuple = DEFAULT_CAPACITY_VOLUMES   # ((name, path), ...)


@dataclasses.dataclass(frozen=True)
class ColdConfig:
    offsite: str = ""        # USER@HOST of hub-cold-store; "" none
    port: int = 22
    ssh_key: str = DEFAULT_COLD_SSH_KEY
    known_hosts: str = DEFAULT_COLD_KNOWN_HOSTS


@dataclasses.dataclass(frozen=True)
class Config:
    path: str
    database: DatabaseConfig
    jobs: JobsConfig
    capacity: CapacityConfig = CapacityConfig()
    cold: ColdConfig = ColdConfig()


def load_config(path: str = DEFAULT_CONFIG, check_passfile: bool = True) -> Config:
    """Read and check the configuration; raise ConfigError with a clear message."""
    parser = configparser.ConfigParser(interpolation=None, strict=True,
                                       default_section="__no_defaults__")
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh, source=path)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"cannot read config file {path}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        msg = " ".join(str(exc).split())
        raise ConfigError(f"config file {path} is not valid INI: {msg}") from None

    for section in parser.sections():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section [{section}] "
                              f"(known: {', '.join('[' + s + ']' for s in SECTIONS)})")
        for key in parser[section]:
            if section == "database" and key == "password":
                raise ConfigError(f"{path}: [database] password is not accepted: the password "
                                  "comes only from the passfile")
            if key not in SECTIONS[section]:
                raise ConfigError(f"{path}: unknown option {key!r} in [{section}] "
                                  f"(known: {', '.join(SECTIONS[section])})")

    jobs = _jobs_section(path, parser)
    try:
        database = _database_section(path, parser)
        capacity = _capacity_section(path, parser)
        cold = _cold_section(path, parser)
        if check_passfile:
            check_passfile_usable(database)
    except ConfigError as exc:
        raise ConfigError(str(exc), alert_command=jobs.alert_command) from None
    return Config(path=path, database=database, jobs=jobs, capacity=capacity, cold=cold)


def _cold_section(path: str, parser: configparser.ConfigParser) -> ColdConfig:
    sec = parser["cold"] if parser.has_section("cold") else {}
    offsite = (sec.get("offsite") or "").strip()
    if offsite and not _OFFSITE_RE.match(offsite):
        raise ConfigError(f"{path}: [cold] offsite {offsite!r} is not USER@HOST")
    port_text = (sec.get("port") or "22").strip()
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{path}: [cold] port {port_text!r} is not a TCP port")
    files = {}
    for key, default in (("ssh_key", DEFAULT_COLD_SSH_KEY),
                         ("known_hosts", DEFAULT_COLD_KNOWN_HOSTS)):
        value = (sec.get(key) or default).strip()
        if not os.path.isabs(value):
            raise ConfigError(f"{path}: [cold] {key} must be an absolute path, got {value!r}")
        files[key] = os.path.normpath(value)
    return ColdConfig(offsite=offsite, port=int(port_text), **files)


def _capacity_section(path: str, parser: configparser.ConfigParser) -> CapacityConfig:
    text = parser.get("capacity", "volumes", fallback="").strip()
    if not text:
        return CapacityConfig()
    volumes = []
    for item in text.split():
        name, sep, vol = item.partition("=")
        if not sep or not _VOLUME_NAME_RE.match(name) or not os.path.isabs(vol):
            raise ConfigError(f"{path}: [capacity] volumes: {item!r} is not NAME=/absolute/path "
                              "(NAME: letters, digits, _)")
        if name in dict(volumes):
            raise ConfigError(f"{path}: [capacity] volumes: {name} is given twice")
        volumes.append((name, os.path.normpath(vol)))
    return CapacityConfig(volumes=tuple(volumes))


def _jobs_section(path: str, parser: configparser.ConfigParser) -> JobsConfig:
    sec = parser["jobs"] if parser.has_section("jobs") else {}
    lock_dir = (sec.get("lock_dir") or DEFAULT_LOCK_DIR).strip()
    if not os.path.isabs(lock_dir):
        raise ConfigError(f"{path}: [jobs] lock_dir must be an absolute path, got {lock_dir!r}")
    alert = (sec.get("alert_command") or "").strip() or None
    lock_timeout = (sec.get("lock_timeout") or DEFAULT_LOCK_TIMEOUT).strip()
    m = _LOCK_TIMEOUT_RE.match(lock_timeout)
    if not m:
        raise ConfigError(f"{path}: [jobs] lock_timeout {lock_timeout!r} is not a duration "
                          "such as 5s, 500ms or 1min", alert_command=alert)
    if int(m.group(1)) == 0:
        raise ConfigError(f"{path}: [jobs] lock_timeout must be greater than 0 (0 would wait "
                          "forever behind the application)", alert_command=alert)
    raw_days = (sec.get("archive_after_days") or str(DEFAULT_ARCHIVE_AFTER_DAYS)).strip()
    if not raw_days.isdigit() or int(raw_days) < 31:
        raise ConfigError(f"{path}: [jobs] archive_after_days must be a whole number of days, at "
                          f"least 31 (a month must be over before it leaves), got {raw_days!r}",
                          alert_command=alert)
    raw_cold = (sec.get("cold_after_days") or str(DEFAULT_COLD_AFTER_DAYS)).strip()
    # A month must have been archived (with its count and checksum) before it can go cold.
    if not raw_cold.isdigit() or int(raw_cold) <= int(raw_days):
        raise ConfigError(f"{path}: [jobs] cold_after_days must be a whole number of days greater "
                          f"than archive_after_days ({int(raw_days)}), got {raw_cold!r}",
                          alert_command=alert)
    cold_dir = (sec.get("cold_dir") or DEFAULT_COLD_DIR).strip()
    if not os.path.isabs(cold_dir):
        raise ConfigError(f"{path}: [jobs] cold_dir must be an absolute path, got {cold_dir!r}",
                          alert_command=alert)
    return JobsConfig(lock_dir=lock_dir, alert_command=alert, lock_timeout=lock_timeout,
                      archive_after_days=int(raw_days), cold_after_days=int(raw_cold),
                      cold_dir=os.path.normpath(cold_dir))


def _database_section(path: str, parser: configparser.ConfigParser) -> DatabaseConfig:
    if not parser.has_section("database"):
        raise ConfigError(f"{path}: section [database] is missing")
    sec = parser["database"]
    values = {}
    for key in DATABASE_REQUIRED:
        value = (sec.get(key) or "").strip()
        if not value:
            raise ConfigError(f"{path}: [database] {key} is required")
        values[key] = value
    port_text = (sec.get("port") or str(DEFAULT_PORT)).strip()
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"{path}: [database] port {port_text!r} is not a port number") from None
    sslmode = (sec.get("sslmode") or DEFAULT_SSLMODE).strip()
    if sslmode not in SSLMODES:
        raise ConfigError(f"{path}: [database] sslmode {sslmode!r} is not one of "
                          f"{', '.join(SSLMODES)}")
    if not os.path.isabs(values["passfile"]):
        raise ConfigError(f"{path}: [database] passfile must be an absolute path, "
                          f"got {values['passfile']!r}")
    binding = (sec.get("channel_binding") or "").strip()
    if binding and binding not in CHANNEL_BINDINGS:
        raise ConfigError(f"{path}: [database] channel_binding {binding!r} is not one of "
                          f"{', '.join(CHANNEL_BINDINGS)}")
    if sslmode.startswith("verify-") and not (sec.get("sslrootcert") or "").strip():
        raise ConfigError(f"{path}: [database] sslmode {sslmode} needs sslrootcert, the CA "
                          "file the server's certificate is verified against")
    extra = tuple((k, sec[k].strip()) for k in ("sslrootcert", "sslcert", "sslkey",
                                               "connect_timeout", "channel_binding")
                  if sec.get(k, "").strip())
    return DatabaseConfig(host=values["host"], port=port, dbname=values["dbname"],
                          user=values["user"], sslmode=sslmode, passfile=values["passfile"],
                          extra=extra)


def check_passfile_usable(db: DatabaseConfig) -> None:
    """Fail clearly where libpq would fail obscurely ("no password supplied").

    libpq ignores a passfile that is missing, not a regular file, or readable by group or
    others; and it finds no password if no line matches host:port:dbname:user.
    """
    pf = db.passfile
    try:
        st = os.stat(pf)
    except FileNotFoundError:
        raise ConfigError(f"passfile {pf} does not exist (create it with mode 0600: "
                          "host:port:dbname:user:password)") from None
    except PermissionError:
        raise ConfigError(f"cannot reach passfile {pf}: permission denied on its "
                          "directory") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"passfile {pf} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(f"passfile {pf} has mode {stat.S_IMODE(st.st_mode):04o}; libpq "
                          "ignores a passfile readable by group or others: chmod 0600 it")
    try:
        with open(pf, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except PermissionError:
        raise ConfigError(f"cannot read passfile {pf} as uid {os.getuid()}: permission "
                          "denied (it must be owned by the user running hubctl)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read passfile {pf}: {exc.strerror}") from None
    if not pgpass_has_entry(text, db.host, db.port, db.dbname, db.user):
        raise ConfigError(f"passfile {pf} has no line matching "
                          f"{db.host}:{db.port}:{db.dbname}:{db.user}")


def _split_pgpass_line(line: str) -> list[str]:
    """Split a passfile line on unescaped ':' into fields (backslash escapes ':' and '\\')."""
    fields, cur, i = [], [], 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur.append(line[i + 1])
            i += 2
            continue
        if ch == ":" and len(fields) < 4:
            fields.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    fields.append("".join(cur))
    return fields


def pgpass_has_entry(text: str, host: str, port: int | str, dbname: str, user: str) -> bool:
    """Whether some line of a passfile would give libpq a password for these options.

    Only the first four fields are compared (the password is never kept). A host list
    (h1,h2) matches if any host does; a default socket directory also matches 'localhost'.
    """
    hosts = [h.strip() for h in host.split(",")] if host else [""]
    wanted_hosts = set()
    for h in hosts:
        if not h or h in _DEFAULT_SOCKET_DIRS:
            wanted_hosts.add("localhost")
        wanted_hosts.add(h)
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = _split_pgpass_line(line)
        if len(fields) < 5:
            continue
        f_host, f_port, f_db, f_user = fields[:4]
        if f_host != "*" and f_host not in wanted_hosts:
            continue
        if f_port != "*" and f_port != str(port):
            continue
        if f_db != "*" and f_db != dbname:
            continue
        if f_user != "*" and f_user != user:
            continue
        return True
    return False
