"""Date and month arithmetic (pure; no database)."""

from __future__ import annotations

import datetime as _dt
import re

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

# A backfill longer than this is almost certainly a typo in --from/--to.
MAX_RANGE_DAYS = 3660


def parse_date(text: str) -> _dt.date:
    """Parse a strict YYYY-MM-DD date; raise ValueError with a readable message."""
    m = _DATE_RE.match(text or "")
    if not m:
        raise ValueError(f"invalid date {text!r}: expected YYYY-MM-DD")
    try:
        return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError as exc:
        raise ValueError(f"invalid date {text!r}: {exc}") from None


def month_start(day: _dt.date) -> _dt.date:
    """First day of the month containing day."""
    return day.replace(day=1)


def add_months(day: _dt.date, n: int) -> _dt.date:
    """First day of the month n months after the month containing day (n may be negative)."""
    index = day.year * 12 + (day.month - 1) + n
    return _dt.date(index // 12, index % 12 + 1, 1)


def months(first: _dt.date, last: _dt.date) -> list[_dt.date]:
    """First days of every month from the month of first to the month of last, inclusive."""
    out = []
    m = month_start(first)
    end = month_start(last)
    while m <= end:
        out.append(m)
        m = add_months(m, 1)
    return out


def month_label(month: _dt.date) -> str:
    """'2026-11' for any day in November 2026."""
    return f"{month.year:04d}-{month.month:02d}"


def days(first: _dt.date, last: _dt.date) -> list[_dt.date]:
    """Every day from first to last, inclusive (empty if last < first)."""
    n = (last - first).days
    return [first + _dt.timedelta(days=i) for i in range(n + 1)]


def resolve_stats_days(today: _dt.date, date: _dt.date | None = None,
                       date_from: _dt.date | None = None,
                       date_to: _dt.date | None = None) -> list[_dt.date]:
    """The days a stats run covers: --date D, or --from D --to D, or yesterday.

    Raises ValueError (a usage error) for a half range, a reversed or too long range,
    or a day after today.
    """
    if date is not None and (date_from is not None or date_to is not None):
        raise ValueError("give either --date or --from/--to, not both")
    if (date_from is None) != (date_to is None):
        raise ValueError("--from and --to must be given together")
    if date is not None:
        first = last = date
    elif date_from is not None:
        first, last = date_from, date_to
        if last < first:
            raise ValueError(f"--from {first} is after --to {last}")
    else:
        first = last = today - _dt.timedelta(days=1)
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise ValueError(f"range {first}..{last} is longer than {MAX_RANGE_DAYS} days")
    if last >= today:
        raise ValueError(f"{last} is not before today ({today}): a day is rolled up once it is over")
    return days(first, last)
