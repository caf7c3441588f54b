"""scripts/lane-failures.sh: what make molecule prints, just above its summary, about a lane that
failed. CI keeps only the end of the output, so these lines are all an operator may see of a
failed run. The log below is shaped like Molecule's own: coloured, every Ansible and pytest line
framed with "  │ ", wrapped, and several scenarios one after the other."""

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts/lane-failures.sh"
FRAME = "  \x1b[2m│\x1b[0m "


def framed(*lines: str) -> str:
    return "".join(f"{FRAME}{line}\n" for line in lines)


def run(tmp_path: Path, text: str) -> list[str]:
    log = tmp_path / "molecule-d13.log"
    log.write_text(text)
    out = subprocess.run([str(SCRIPT), str(log)], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


# A scenario that passed: its expected failures (a preflight refusing bad input) are no finding.
PASSED_SCENARIO = (
    "==> [preflight on Debian 13] data disk: /dev/loop3\n"
    + framed("TASK [host : Check the data device]",
             "fatal: [hub-preflight-d13]: FAILED! => ",
             "    msg: host_data_device '/dev/does-not-exist' is not a block device")
    + "\x1b[32mpreflight\x1b[0m : actions=6  successful=6  failed=0\n"
)

FAILED_SCENARIO = (
    "==> [site on Debian 13] data disk: /dev/loop3\n"
    + framed("TASK [pgbackrest : Probe the repository]",
             "fatal: [hub-site-d13]: FAILED! => ",
             "    msg: an expected probe failure",
             "...ignoring",
             "TASK [pgbackrest : Next]",
             "ok: [hub-site-d13]",
             "tests/test_6_backup.py::test_offsite_host_down PASSED   [ 90%]",
             "\x1b[31m=========================== short test summary info\x1b[0m",
             "  ============================",
             "\x1b[31mFAILED\x1b[0m tests/test_7_drill.py::test_the_drill_restores - AssertionError: rc 2",
             "=================== 1 failed, 68 passed in 696.41s (0:11:36)",
             "  ===================",
             "FAILED - RETRYING: [localhost]: Wait for instance(s) deletion to complete")
    + "CRITICAL Verifier tests failed\n"
)


def test_a_failed_test_is_named_with_its_message(tmp_path):
    assert run(tmp_path, PASSED_SCENARIO + FAILED_SCENARIO) == [
        "FAILED tests/test_7_drill.py::test_the_drill_restores - AssertionError: rc 2"]


def test_a_failed_task_is_shown_with_its_message(tmp_path):
    converge = ("==> [site on Debian 12] data disk: /dev/loop2\n"
                + framed("TASK [postgresql : Start the cluster]",
                         "fatal: [hub-site-d12]: FAILED! => ",
                         "    changed: false",
                         "    msg: Unable to start service postgresql@17-main",
                         "PLAY RECAP *********")
                + "CRITICAL Ansible return code was 2\n")
    lines = run(tmp_path, PASSED_SCENARIO + converge)
    assert lines[:3] == ["fatal: [hub-site-d12]: FAILED! => ", "    changed: false",
                         "    msg: Unable to start service postgresql@17-main"]
    assert not any("does-not-exist" in line for line in lines), "an earlier scenario's expected failure"


def test_without_a_test_or_task_to_name_it_shows_the_end_of_the_log(tmp_path):
    text = "==> [host on Debian 13] data disk: /dev/loop3\n" + "".join(f"line {n}\n" for n in range(40))
    assert run(tmp_path, text) == [f"line {n}" for n in range(25, 40)]
