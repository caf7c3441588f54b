"""hubctl: maintenance jobs of the job-allocation hub's PostgreSQL database.

Installed on the database host by copying this package directory to
/usr/local/lib/hubctl/hubctl, with the wrapper the maintenance role writes
(roles/maintenance/templates/hubctl.sh.j2), which runs Python isolated (-I) so that nothing in
the caller's directory or environment is imported in hubctl's place::

    #!/bin/sh
    exec /usr/bin/python3 -I -c 'import sys; sys.path.insert(0, "/usr/local/lib/hubctl"); ...' "$@"

It needs only Debian's python3 (3.11 or later) and python3-psycopg2.

Usage: hubctl [--config PATH] [--dry-run] [--today YYYY-MM-DD] COMMAND ...

Exit codes (see jobs.py):
  0   ok (also: every --dry-run that could run, and status)
  1   failed (the run is recorded as failed and the alert command is run)
  2   bad command line (nothing done)
  3   attention: the job ran, but something needs an operator (rows in a default partition,
      a month that could not be made); recorded in the run's detail
  75  busy: another hubctl job holds the lock; recorded as 'busy', alert run, nothing done
  78  configuration error (config file or passfile); nothing done
"""

__version__ = "0.1.0"
