-- Incremental users sync ([pipeline] incremental = true; src/extract/users_delta.rs, src/transform/users_snapshot.rs). Idempotent.

-- Where each incremental connector's next users sync continues: the @odata.deltaLink of the
-- run whose users `users_current` holds. The transform writes it in the same transaction as
-- the snapshot, so the link never runs ahead of the snapshot. A NULL link means the next run
-- syncs in full. The link is a credential of sorts: the database is readable by its owner only.
CREATE TABLE IF NOT EXISTS delta_links (
    connector   VARCHAR NOT NULL,
    tenant_id   VARCHAR,
    user_select VARCHAR,        -- the $select the link tracks; another selection syncs in full
    link        VARCHAR,
    run_id      VARCHAR NOT NULL,   -- the run the snapshot (and this link) belong to
    stored_at   TIMESTAMP NOT NULL
);

-- The directory as of delta_links.run_id, one row per user: the record exactly as Graph last
-- sent it, with the lineage of the run that sent it.
CREATE TABLE IF NOT EXISTS users_current (
    connector     VARCHAR NOT NULL,
    id            VARCHAR NOT NULL,
    record        VARCHAR NOT NULL,
    _run_id       VARCHAR,
    _stream       VARCHAR,
    _page         INTEGER,
    _row          BIGINT,
    _extracted_at TIMESTAMPTZ
);

-- Users a run's delta reported as removed: reason `changed` (soft-deleted, restorable for 30
-- days) or `deleted` (permanently deleted).
CREATE TABLE IF NOT EXISTS users_tombstones (
    run_id    VARCHAR NOT NULL,
    connector VARCHAR NOT NULL,
    id        VARCHAR NOT NULL,
    reason    VARCHAR
);

-- How each incremental run's users were synced.
CREATE TABLE IF NOT EXISTS run_users_sync (
    run_id          VARCHAR NOT NULL,
    connector       VARCHAR NOT NULL,
    sync            VARCHAR NOT NULL,   -- full | delta
    delta_from      VARCHAR,            -- delta: the run whose snapshot the changes apply to
    rows_fetched    BIGINT,             -- users records landed (changes and tombstones for a delta)
    upserted        BIGINT,             -- users added or replaced
    removed         BIGINT,             -- @removed entries (see users_tombstones)
    snapshot_users  BIGINT,             -- users in the snapshot after the run
    replayed_runs   VARCHAR[],          -- earlier runs applied again to rebuild the snapshot
    resync          VARCHAR             -- why Graph refused the stored link (the run synced in full)
);
