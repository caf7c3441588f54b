-- 0005: a run that ends with something an operator must look at (rows stranded in a default
-- partition, a month that could not be made) is recorded as 'attention' rather than 'ok', so
-- that monitoring reading hub_job_runs.outcome sees it.

ALTER TABLE hub_job_runs DROP CONSTRAINT hub_job_runs_outcome_check;

ALTER TABLE hub_job_runs ADD CONSTRAINT hub_job_runs_outcome_check
    CHECK (outcome IN ('running', 'ok', 'attention', 'failed', 'busy'));
