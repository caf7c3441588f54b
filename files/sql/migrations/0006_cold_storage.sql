-- 0006: cold storage. An archived month older than a year leaves the database for a
-- compressed file on the host (`hubctl cold export`); the ledger keeps where the file is and
-- what it must be, so that the file can be checked, and the month brought back, without
-- anything else (`hubctl cold restore`).
--
-- The export writes the file, reads it back into a temporary table and compares the row count
-- and checksum with the ledger's; only then, in one transaction, it drops the partition and
-- sets state 'cold' with the file's path (cold_path, from 0003), size and sha256. The sha256 is
-- what a restore checks first: a damaged or replaced file is refused before it is loaded.

ALTER TABLE hub_archived_partitions
    ADD COLUMN cold_bytes  bigint,
    ADD COLUMN cold_sha256 text,
    ADD COLUMN exported_at timestamptz;

-- No row is 'cold' before this migration (nothing exported before it), so both hold at once.
ALTER TABLE hub_archived_partitions ADD CONSTRAINT hub_archived_partitions_cold_file_check
    CHECK (state <> 'cold' OR (cold_bytes IS NOT NULL AND cold_sha256 IS NOT NULL AND exported_at IS NOT NULL));

ALTER TABLE hub_archived_partitions ADD CONSTRAINT hub_archived_partitions_cold_sha256_check
    CHECK (cold_sha256 ~ '^[0-9a-f]{64}$');

ALTER TABLE hub_archived_partitions ADD CONSTRAINT hub_archived_partitions_cold_bytes_check
    CHECK (cold_bytes > 0);

COMMENT ON COLUMN hub_archived_partitions.cold_path IS
    'The cold file (zstd-compressed COPY text) on the database host; a JSON manifest is beside it.';
COMMENT ON COLUMN hub_archived_partitions.cold_bytes IS
    'Size of the cold file in bytes.';
COMMENT ON COLUMN hub_archived_partitions.cold_sha256 IS
    'sha256 of the cold file, checked before a restore loads it.';
COMMENT ON COLUMN hub_archived_partitions.exported_at IS
    'When the cold file was written (it was verified against row_count and checksum before the partition was dropped).';

-- Where `hubctl cold restore` brings a month back: one standalone table per month
-- (hub_restored.<table>_pYYYY_MM), made and owned by hub_owner, dropped by an operator when
-- done. Readable by the reporting role; the application has no access (the default privileges
-- the postgresql role gives hub_app are for schema public only).
CREATE SCHEMA hub_restored;

COMMENT ON SCHEMA hub_restored IS
    'Cold months loaded back by hubctl cold restore for a query; drop each table when done.';

GRANT USAGE ON SCHEMA hub_restored TO hub_readonly;

-- For the tables hub_owner (this migration's role, and hubctl's) creates here from now on.
ALTER DEFAULT PRIVILEGES IN SCHEMA hub_restored GRANT SELECT ON TABLES TO hub_readonly;
