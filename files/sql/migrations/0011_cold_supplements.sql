-- 0011: late rows of a cold month get a defined end.
--
-- A row written for a month that is already in a cold file lands in the live table's default
-- partition. Until this migration it stayed there, and the daily job reported it every night.
-- Now the daily job moves such rows out of the default partition into a supplement file beside
-- the month's cold file (verified by reading it back, like the month's own file) and adds
-- their count and checksum to the month's ledger row. cold_supplements lists those files in
-- order: a restore loads the month's file, then each supplement, and compares the total with
-- row_count and checksum. cold_bytes counts the month's file and its supplements.

ALTER TABLE hub_archived_partitions
    ADD COLUMN cold_supplements jsonb NOT NULL DEFAULT '[]'::jsonb;

ALTER TABLE hub_archived_partitions ADD CONSTRAINT hub_archived_partitions_supplements_check
    CHECK (jsonb_typeof(cold_supplements) = 'array'
           AND (state = 'cold' OR cold_supplements = '[]'::jsonb));

COMMENT ON COLUMN hub_archived_partitions.cold_supplements IS
    'Supplement files of a cold month, in order: [{file, sha256, bytes, row_count, checksum, written_at}]. row_count and checksum of the ledger row include them.';
