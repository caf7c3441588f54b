-- 0008: what a disaster-recovery drill measures a restored copy against (playbooks/dr-drill.yml).
--
-- hub_markers: one row every five minutes (`hubctl marker`, cron). A restored copy's newest
-- marker, compared with the hub's newest (or with the requested recovery target), is the drill's
-- achieved RPO, to the marker interval.
--
-- hub_backup_manifests: the row count of every live partition, written by the backup jobs
-- (full, incr, offsite) just before pgBackRest starts. A restored copy must hold at least these
-- rows in each (rows are updated, not deleted, so a later count can only be higher); archived
-- months are checked exactly against their own ledger (hub_archived_partitions) instead.

CREATE TABLE hub_markers (
    id         bigserial   PRIMARY KEY,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE hub_markers IS
    'A row every five minutes (hubctl marker); a restored copy''s newest row measures its RPO.';

CREATE TABLE hub_backup_manifests (
    taken_at timestamptz NOT NULL,
    relation text        NOT NULL,
    rows     bigint      NOT NULL,
    CONSTRAINT hub_backup_manifests_pkey PRIMARY KEY (taken_at, relation),
    CONSTRAINT hub_backup_manifests_rows_check CHECK (rows >= 0)
);

COMMENT ON TABLE hub_backup_manifests IS
    'Row count of each live partition (schema.name) when a backup job started pgBackRest; checked by DR drills.';

-- Written by the maintenance jobs (hub_maint) only. The owner's default privileges gave the
-- application write access to every new table, as in 0003.
REVOKE INSERT, UPDATE, DELETE ON hub_markers, hub_backup_manifests FROM hub_app;
GRANT SELECT, INSERT ON hub_markers, hub_backup_manifests TO hub_maint;
GRANT USAGE ON SEQUENCE hub_markers_id_seq TO hub_maint;
