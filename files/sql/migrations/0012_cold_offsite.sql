-- 0012: the off-site copy of each cold file.
--
-- A cold month's file was its only copy once repo2's backups from before the drop expired.
-- From here on hubctl stores every cold file a second time on the off-site host (encrypted
-- there, read back with the hub's sha256 before it answers) and drops a month only after that
-- copy is verified. offsite_sha256 is the sha256 the off-site host verified: the cold file's
-- (cold_sha256). Supplements (0011) carry the same fact in their entry ("offsite_verified_at").
-- Months that went cold before this migration have neither; the next daily run copies them.

ALTER TABLE hub_archived_partitions
    ADD COLUMN offsite_sha256 text,
    ADD COLUMN offsite_verified_at timestamptz;

ALTER TABLE hub_archived_partitions ADD CONSTRAINT hub_archived_partitions_offsite_check
    CHECK ((offsite_sha256 IS NULL) = (offsite_verified_at IS NULL)
           AND (offsite_sha256 IS NULL OR (state = 'cold' AND offsite_sha256 = cold_sha256)));

COMMENT ON COLUMN hub_archived_partitions.offsite_sha256 IS
    'sha256 of the cold file as the off-site host read its encrypted copy back (equals cold_sha256).';
COMMENT ON COLUMN hub_archived_partitions.offsite_verified_at IS
    'When the off-site host last confirmed its copy of the cold file; NULL: no verified second copy yet.';
