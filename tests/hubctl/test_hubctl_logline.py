import datetime as dt
import io
import re

import pytest

from hubctl import jobs
from hubctl.jobs import Job, Logger, format_line, format_value, now_iso

LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d hubctl job=\S+ step=\S+( [a-z_]+=\S+)*$")


def test_format_line_matches_the_documented_example():
    line = format_line("2026-11-26T03:00:01+09:00", "daily", "stats",
                       {"date": dt.date(2026, 11, 25), "rows": 1, "duration_ms": 12,
                        "outcome": "ok"})
    assert line == ("2026-11-26T03:00:01+09:00 hubctl job=daily step=stats "
                    "date=2026-11-25 rows=1 duration_ms=12 outcome=ok")


def test_values_with_spaces_quotes_and_newlines_stay_on_one_greppable_line():
    line = format_line("T", "daily", "partitions",
                       {"error": 'canceling statement due to "lock" timeout\nDETAIL: x',
                        "outcome": "failed"})
    assert "\n" not in line
    assert line.endswith(' outcome=failed')
    assert 'error="canceling statement due to \\"lock\\" timeout\\nDETAIL: x"' in line


@pytest.mark.parametrize("value, text", [
    (None, "-"), (True, "yes"), (False, "no"), (0, "0"), ("", '""'),
    (["2027-04", "2027-05"], "2027-04,2027-05"), (dt.date(2027, 1, 2), "2027-01-02"),
    ("a=b", '"a=b"'), ("/run/lock/hub/hubctl.lock", "/run/lock/hub/hubctl.lock"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_now_iso_has_seconds_and_offset():
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", now_iso())


def test_logger_writes_one_flushed_line():
    buf = io.StringIO()
    Logger("stats", buf).line("stats", date=dt.date(2026, 11, 25), rows=1, outcome="ok")
    out = buf.getvalue()
    assert out.count("\n") == 1
    assert LINE_RE.match(out.strip()), out
    assert " job=stats step=stats date=2026-11-25 rows=1 outcome=ok" in out


def _job(buf):
    return Job("daily", cfg=None, today=dt.date(2026, 11, 26), dry_run=False,
               log=Logger("daily", buf), connect=None)


def test_step_logs_rows_duration_and_outcome_last():
    buf = io.StringIO()
    job = _job(buf)
    with job.step("stats", date=dt.date(2026, 11, 25)) as st:
        st.rows = 1
        st.set(total=3)
    line = buf.getvalue().strip()
    assert LINE_RE.match(line), line
    assert re.search(r" step=stats date=2026-11-25 total=3 rows=1 duration_ms=\d+ outcome=ok$",
                     line), line
    assert job.rows() == 1 and job.failed_steps() == []


def test_step_attention_and_failure_are_recorded():
    buf = io.StringIO()
    job = _job(buf)
    with job.step("default_rows", table="t") as st:
        st.rows = 2
        st.need_attention("t_default holds 2 rows")
    with pytest.raises(ZeroDivisionError):
        with job.step("stats", date="2026-11-25"):
            1 / 0
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith("outcome=attention")
    assert "outcome=failed" in lines[1] and "ZeroDivisionError" in lines[1]
    assert job.attention() == ["t_default holds 2 rows"]
    assert [s.name for s in job.failed_steps()] == ["stats"]
    detail = job.steps[1].as_detail()
    assert detail["outcome"] == "failed" and "ZeroDivisionError" in detail["error"]


def test_exit_codes_are_distinct():
    codes = [jobs.EXIT_OK, jobs.EXIT_FAILED, jobs.EXIT_USAGE, jobs.EXIT_ATTENTION,
             jobs.EXIT_BUSY, jobs.EXIT_CONFIG]
    assert codes == [0, 1, 2, 3, 75, 78]
