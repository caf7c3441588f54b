-- 0003: the daily statistics, the maintenance jobs' run records, and the archive ledger.

-- Exactly the seed's table (section 6.2), filled by the idempotent stats rollup
-- (one row per day, rewritten with INSERT ... ON CONFLICT (stat_date) DO UPDATE).
CREATE TABLE v1_hub_daily_stats (
    stat_date             DATE PRIMARY KEY,
    total_allocations     BIGINT,
    completed_count       BIGINT,
    expired_count         BIGINT,
    avg_execution_time_ms INTEGER,
    unique_clients        INTEGER,
    unique_keywords       INTEGER,
    created_at            TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

COMMENT ON TABLE v1_hub_daily_stats IS
    'One row per day of v1_hub_work_allocations, written by the stats rollup (hubctl).';

-- One row per run of a maintenance job: inserted as 'running' when it starts, closed with
-- its outcome. 'busy' is a run that found another run holding the lock and did nothing.
CREATE TABLE hub_job_runs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job         text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text        NOT NULL DEFAULT 'running',
    rows        bigint,
    detail      jsonb,
    CONSTRAINT hub_job_runs_outcome_check
        CHECK (outcome IN ('running', 'ok', 'failed', 'busy')),
    CONSTRAINT hub_job_runs_finished_check
        CHECK ((outcome = 'running') = (finished_at IS NULL)),
    CONSTRAINT hub_job_runs_rows_check CHECK (rows >= 0)
);

COMMENT ON TABLE hub_job_runs IS
    'Runs of the maintenance jobs (hubctl): start, end, rows, outcome; read by monitoring.';

-- The last runs of a job, newest first.
CREATE INDEX hub_job_runs_job_started_idx ON hub_job_runs (job, started_at DESC);

-- One row per month of a live table that the archive job has taken in hand. The row count and
-- checksum are recorded while the month is still attached to the live table ('live'), kept
-- when it is attached to the archive table ('archived'), and checked against the cold file
-- before the partition is dropped ('cold', with the file's path).
CREATE TABLE hub_archived_partitions (
    parent_table   text        NOT NULL,
    month          date        NOT NULL,
    partition_name text        NOT NULL,
    row_count      bigint      NOT NULL,
    checksum       text        NOT NULL,
    state          text        NOT NULL DEFAULT 'live',
    cold_path      text,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT hub_archived_partitions_pkey PRIMARY KEY (parent_table, month),
    CONSTRAINT hub_archived_partitions_month_check CHECK (extract(day FROM month) = 1),
    CONSTRAINT hub_archived_partitions_state_check CHECK (state IN ('live', 'archived', 'cold')),
    CONSTRAINT hub_archived_partitions_cold_path_check CHECK (state <> 'cold' OR cold_path IS NOT NULL),
    CONSTRAINT hub_archived_partitions_row_count_check CHECK (row_count >= 0)
);

COMMENT ON TABLE hub_archived_partitions IS
    'Months moved out of the live tables: row count, checksum, state (live, archived, cold), cold file.';

-- The default privileges gave the application write access to every table of the owner; these
-- three are written by the maintenance jobs (hub_maint, a member of hub_owner) only.
REVOKE INSERT, UPDATE, DELETE ON v1_hub_daily_stats, hub_job_runs, hub_archived_partitions FROM hub_app;
