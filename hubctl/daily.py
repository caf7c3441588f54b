"""`hubctl daily`: the 03:00 job, one run record for all its steps.

Order: partition maintenance first (so a missed monthly run never breaks inserts), then the
archive of months older than 90 days (to come), then yesterday's stats rollup. A step's
database error is recorded and the next step still runs; the job then ends 'failed'.
"""

from __future__ import annotations

from hubctl import partitions, stats
from hubctl.jobs import Job

# The steps of the daily job, in order. The archive step slots in after partitions:
#     from hubctl import archive
#     STEPS = (partitions.run, archive.run, stats.yesterday)
# archive.run(job) takes the same Job (job.conn, job.step(...), job.today, job.dry_run).
STEPS = (partitions.run, stats.yesterday)


def run(job: Job) -> None:
    for step in STEPS:
        step(job)
