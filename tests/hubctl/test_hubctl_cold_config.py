"""The cold storage options of [jobs]: defaults, and bad values refused with what to fix."""

import pytest

from hubctl.config import ConfigError, load_config
from hubctl_testutil import write_config


def test_defaults(tmp_path):
    cfg = load_config(write_config(tmp_path, jobs=""))
    assert cfg.jobs.cold_after_days == 365
    assert cfg.jobs.cold_dir == "/var/lib/hub/cold"


def test_values(tmp_path):
    cfg = load_config(write_config(tmp_path, jobs="archive_after_days = 60\ncold_after_days = 61\n"
                                                  "cold_dir = /srv/hub-cold/\n"))
    assert (cfg.jobs.archive_after_days, cfg.jobs.cold_after_days) == (60, 61)
    assert cfg.jobs.cold_dir == "/srv/hub-cold"


@pytest.mark.parametrize("jobs, fragment", [
    ("cold_after_days = 90\n", r"greater than archive_after_days \(90\), got '90'"),
    ("archive_after_days = 120\ncold_after_days = 100\n",
     r"greater than archive_after_days \(120\)"),
    ("cold_after_days = a year\n", "whole number of days"),
    ("cold_after_days = -400\n", "whole number of days"),
    ("cold_dir = cold\n", r"cold_dir must be an absolute path, got 'cold'"),
    ("cold_dirs = /x\n", "unknown option 'cold_dirs'"),
])
def test_bad_values(tmp_path, jobs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(write_config(tmp_path, jobs=f"alert_command = /bin/true\n{jobs}"))


def test_bad_value_still_lets_the_caller_alert(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_config(write_config(tmp_path, jobs="alert_command = /bin/true\ncold_after_days = 1\n"))
    assert exc.value.alert_command == "/bin/true"
