"""The DR drill's verification script (roles/dr_drill/files/drill_verify.py): its WAL position
arithmetic, which decides whether a restore to the newest point replayed all of repo2's WAL.
The checks themselves run against a restored copy in the site scenario (test_7_drill.py)."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "roles/dr_drill/files/drill_verify.py"
spec = importlib.util.spec_from_file_location("drill_verify", SCRIPT)
drill_verify = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drill_verify)

MB16 = 16 * 1024 * 1024


def test_lsn_bytes_reads_both_halves():
    assert drill_verify.lsn_bytes("0/0") == 0
    assert drill_verify.lsn_bytes("16/B374D848") == (0x16 << 32) + 0xB374D848


@pytest.mark.parametrize("size", [MB16, 64 * 1024 * 1024, 1024 * 1024])
def test_segment_names_and_positions_round_trip(size):
    for number in (0, 1, 255, 256, 4097, 70000):
        name = drill_verify.segment_name(3, number, size)
        assert len(name) == 24
        assert drill_verify.segment_position(name, size) == (3, number)


def test_sixteen_mb_segments_are_named_as_postgresql_names_them():
    # 0/5000028 lies in segment 5 of log 0; 1/0 is the first segment of log 1 (256 per log).
    assert drill_verify.segment_name(1, drill_verify.lsn_bytes("0/5000028") // MB16, MB16) == "000000010000000000000005"
    assert drill_verify.segment_name(1, drill_verify.lsn_bytes("1/0") // MB16, MB16) == "000000010000000100000000"


def test_recovery_end_is_the_last_line_of_the_history_file():
    history = ("1\t0/9000000\tno recovery target specified\n\n"
               "2\t0/B0000A0\tbefore 2026-11-27 06:00:00+00\n")
    assert drill_verify.recovery_end(history) == (2, "0/B0000A0")
    assert drill_verify.recovery_end("") is None
    assert drill_verify.recovery_end("# only a comment\n") is None


def test_a_replay_that_ended_before_the_archives_end_is_behind_it():
    # Segment ...07 missing after ...06 ended with a switch record: the new timeline begins at
    # 0/7000000, but replay read through ...06 only, while repo2 holds up to ...09.
    assert drill_verify.replay_end("0/7000000", "000000010000000000000009", MB16) == (6, False)
    # Mid-segment end (a record cut short in the missing segment's predecessor).
    assert drill_verify.replay_end("0/6FFFF40", "000000010000000000000009", MB16) == (6, False)


def test_the_newest_segment_missing_or_unreadable_is_behind_too():
    # repo2's newest segment ...09 cannot be read: replay ends at its start, having read ...08.
    assert drill_verify.replay_end("0/9000000", "000000010000000000000009", MB16) == (8, False)


def test_a_replay_through_the_archives_last_segment_reached_it():
    # ...09 read through its switch record: the new timeline begins at the start of ...0A.
    assert drill_verify.replay_end("0/A000000", "000000010000000000000009", MB16) == (9, True)
    # A later segment arrived while the copy replayed: further is fine.
    assert drill_verify.replay_end("0/B000000", "000000010000000000000009", MB16) == (10, True)


def test_timelines_do_not_decide_the_comparison():
    # The archive's newest segment on a newer timeline (a promotion since) is compared by its
    # number: LSNs continue across timelines.
    assert drill_verify.replay_end("0/9000000", "000000030000000000000009", MB16) == (8, False)
    assert drill_verify.replay_end("0/A000000", "000000030000000000000009", MB16) == (9, True)
