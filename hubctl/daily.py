"""`hubctl daily`: the 03:00 job, one run record for all its steps.

Order: the archive of months older than 90 days (and of late rows for archived months), then
the cold export of archived months older than 365 days (to verified files, then dropped), then
partition maintenance (so a missed monthly run never breaks inserts), yesterday's stats, and
last the size snapshot the capacity report fits (after the moves, so it sees the day's final
sizes). A step's
failure is recorded and the next step still runs; the job then ends 'failed'.
"""

from __future__ import annotations

from hubctl import archive, capacity, cold, partitions, stats
from hubctl.jobs import Job, JobAbort

# The steps of the daily job, in order. The archive runs first so that late rows it moves out
# of the default partitions are not reported by the partition step as stray. The cold export
# follows it, so a month archived and cold-eligible on the same run (a long pause) goes at once.
STEPS = (archive.run, cold.run, partitions.run, stats.yesterday, capacity.snapshot)


def run(job: Job) -> None:
    """Run every step even when one fails (a failed partition step must not cost yesterday's
    stats); the job then ends failed with each step's error."""
    errors = []
    for step in STEPS:
        try:
            step(job)
        except Exception as exc:  # recorded below; the next step still runs
            errors.append(f"{step.__module__.rsplit('.', 1)[-1]}: {exc}")
    if errors:
        raise JobAbort("; ".join(errors))
