-- 0009: the daily size snapshot the capacity report fits its trend to (`hubctl capacity`).
--
-- Prometheus keeps 15 days and the report needs at least 30, so the daily job writes one row
-- per table and tier (and for pg_wal, the whole database and each volume) every day. A rerun
-- on the same day replaces that day's rows. At about 20 rows a day this table holds some
-- 36,000 rows after five years: it is never archived.
--
-- subject/tier:
--   <table>/live, <table>/archive   bytes of the table's partitions (heap, TOAST, indexes;
--                                   a partitioned parent itself reports 0), index_bytes, rows
--                                   by the planner's statistics
--   <table>/cold                    bytes of the table's cold files, rows from the ledger
--   pg_wal/wal                      bytes in pg_wal
--   database/database               pg_database_size of the hub database
--   <volume>/volume                 bytes used of the file system (size - free to users) and
--                                   its size in volume_bytes (data, repo1)

CREATE TABLE hub_size_snapshots (
    taken_on     date        NOT NULL,
    subject      text        NOT NULL,
    tier         text        NOT NULL,
    bytes        bigint      NOT NULL,
    index_bytes  bigint,
    rows         bigint,
    volume_bytes bigint,
    taken_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT hub_size_snapshots_pkey PRIMARY KEY (taken_on, subject, tier),
    CONSTRAINT hub_size_snapshots_tier_check
        CHECK (tier IN ('live', 'archive', 'cold', 'wal', 'database', 'volume')),
    CONSTRAINT hub_size_snapshots_bytes_check
        CHECK (bytes >= 0 AND coalesce(index_bytes, 0) >= 0 AND coalesce(rows, 0) >= 0),
    CONSTRAINT hub_size_snapshots_volume_check
        CHECK ((tier = 'volume') = (volume_bytes IS NOT NULL) AND coalesce(volume_bytes, 1) > 0)
);

COMMENT ON TABLE hub_size_snapshots IS
    'Daily sizes per table and tier, pg_wal, the database and each volume (hubctl daily); what hubctl capacity fits.';

-- Written by the maintenance jobs (hub_maint) only, as in 0003 and 0008.
REVOKE INSERT, UPDATE, DELETE ON hub_size_snapshots FROM hub_app;
GRANT SELECT, INSERT, UPDATE ON hub_size_snapshots TO hub_maint;
