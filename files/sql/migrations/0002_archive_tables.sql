-- 0002: an archive table beside each live table, partitioned by the same key.
--
-- The archive job moves a month by DETACHing its partition from the live table and ATTACHing
-- it here: no row is copied. ATTACH requires the same columns with the same types and
-- NOT NULL marks, and every CHECK constraint of the parent, under the same name, on the
-- partition. LIKE ... INCLUDING CONSTRAINTS gives exactly that (constraint names are copied);
-- INCLUDING INDEXES gives the same indexes, so ATTACH adopts the partition's existing indexes
-- instead of building new ones. Defaults and identity are left out on purpose: nothing
-- inserts here through the parent, and a detached partition has a plain bigint id.
--
-- A later migration that changes a live table must change its archive table the same way,
-- in the same file.
--
-- No default partition: ATTACH would have to scan it, and rows that arrive late for an
-- archived month land in the live table's default partition, where the archive job finds them.

CREATE TABLE v1_hub_work_allocations_archive (
    LIKE v1_hub_work_allocations
    INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS
) PARTITION BY RANGE (work_date);

CREATE TABLE v1_hub_client_activity_logs_archive (
    LIKE v1_hub_client_activity_logs
    INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS
) PARTITION BY RANGE (log_date);

CREATE TABLE v1_hub_proxy_toggle_logs_archive (
    LIKE v1_hub_proxy_toggle_logs
    INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS
) PARTITION BY RANGE (log_date);

CREATE TABLE v1_hub_work_slots_history_archive (
    LIKE v1_hub_work_slots_history
    INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS
) PARTITION BY RANGE (work_date);

COMMENT ON TABLE v1_hub_work_allocations_archive IS
    'Months of v1_hub_work_allocations older than 90 days, attached by the archive job (see hub_archived_partitions).';
COMMENT ON TABLE v1_hub_client_activity_logs_archive IS
    'Months of v1_hub_client_activity_logs older than 90 days, attached by the archive job (see hub_archived_partitions).';
COMMENT ON TABLE v1_hub_proxy_toggle_logs_archive IS
    'Months of v1_hub_proxy_toggle_logs older than 90 days, attached by the archive job (see hub_archived_partitions).';
COMMENT ON TABLE v1_hub_work_slots_history_archive IS
    'Months of v1_hub_work_slots_history older than 90 days, attached by the archive job (see hub_archived_partitions).';

-- The default privileges gave the application write access; the archive is read-only to it.
-- (Only the parent's privileges count for queries through the parent.)
REVOKE INSERT, UPDATE, DELETE ON
    v1_hub_work_allocations_archive,
    v1_hub_client_activity_logs_archive,
    v1_hub_proxy_toggle_logs_archive,
    v1_hub_work_slots_history_archive
FROM hub_app;
