-- 0010: the ledger names the columns its checksum covers.
--
-- A month's checksum is the sum of the first 60 bits of md5 of each row's text. Until this
-- migration that text was the whole row, so adding a column to a live table and its archive
-- twin (as 0002 requires) changed the text of every archived row: each cold export, drill and
-- late-row move then compared new-shape sums with old-shape ledger figures. From here on the
-- text is ROW(checksum_columns): the columns the table had when the month was first counted.
-- A column added later is carried in the files but is not part of that month's checksum; a
-- month archived after the change has the new column in its list.
--
-- Every existing row was counted over the whole row, that is over the columns the archive
-- twin has now (no migration before this one changed a hub table's columns), so that is the
-- list they get. A ledger row whose archive twin is missing stops the migration by name.

ALTER TABLE hub_archived_partitions ADD COLUMN checksum_columns text[];

DO $$
DECLARE
    orphan text;
BEGIN
    SELECT string_agg(DISTINCT parent_table, ', ') INTO orphan
    FROM hub_archived_partitions
    WHERE to_regclass(parent_table || '_archive') IS NULL;
    IF orphan IS NOT NULL THEN
        RAISE EXCEPTION 'hub_archived_partitions names tables without an archive twin: %', orphan
            USING HINT = 'apply 0002, or remove the ledger rows of tables the hub no longer has';
    END IF;
END
$$;

UPDATE hub_archived_partitions l
SET checksum_columns = (
    SELECT array_agg(a.attname::text ORDER BY a.attnum)
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = to_regclass(l.parent_table || '_archive')
      AND a.attnum > 0 AND NOT a.attisdropped);

ALTER TABLE hub_archived_partitions ALTER COLUMN checksum_columns SET NOT NULL;

ALTER TABLE hub_archived_partitions ADD CONSTRAINT hub_archived_partitions_checksum_columns_check
    CHECK (cardinality(checksum_columns) > 0);

COMMENT ON COLUMN hub_archived_partitions.checksum_columns IS
    'The columns, in order, whose ROW(...) text row_count and checksum were computed over; every later check of this month hashes the same columns.';
