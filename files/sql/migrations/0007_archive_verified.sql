-- 0007: the archive records when a moved month's count and checksum were read back.
--
-- The move (DETACH from the live table, ATTACH to the archive) is a catalog change that holds
-- the live table's exclusive lock for milliseconds. The month's rows are counted and
-- checksummed again after it, in a transaction of their own that blocks no writer: the
-- partition is then in the archive, where nothing writes. Until that read is done a moved
-- month has verified_at NULL, and the next archive run does it (a run killed between the two
-- leaves exactly that). Cold export takes only verified months.
--
-- Months moved before this migration were counted under the lock in the move itself.

ALTER TABLE hub_archived_partitions ADD COLUMN verified_at timestamptz;

UPDATE hub_archived_partitions SET verified_at = recorded_at WHERE state IN ('archived', 'cold');

ALTER TABLE hub_archived_partitions ADD CONSTRAINT hub_archived_partitions_verified_check
    CHECK (state <> 'cold' OR verified_at IS NOT NULL);

COMMENT ON COLUMN hub_archived_partitions.verified_at IS
    'When row_count and checksum were read back from the month in the archive (NULL: moved, not yet read back).';
