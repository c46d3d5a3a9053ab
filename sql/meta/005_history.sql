-- Per-run results kept across runs (idempotent). Each transform of a run replaces that run's
-- rows; `people` is the exception: its columns are the mapping's target attributes, so the
-- transform creates it from `out_people` (src/transform/persist.rs).

-- Users the date filter kept that the mapping or an audit refused.
CREATE TABLE IF NOT EXISTS rejects (
    run_id              VARCHAR,
    external_id         VARCHAR,
    user_principal_name VARCHAR,
    reason              VARCHAR,
    source_row          BIGINT
);

-- Report rows that matched no user, by report and reason.
CREATE TABLE IF NOT EXISTS report_rows_unmatched (
    run_id      VARCHAR,
    report      VARCHAR,
    reason      VARCHAR,
    rows        BIGINT,
    explanation VARCHAR
);

-- Licences per SKU as Graph reported them, with the users holding each.
CREATE TABLE IF NOT EXISTS license_counts (
    run_id            VARCHAR,
    sku_id            VARCHAR,
    sku_part_number   VARCHAR,
    sku_name          VARCHAR,
    capability_status VARCHAR,
    prepaid_enabled   BIGINT,
    consumed_units    BIGINT,
    assigned_users    BIGINT
);
-- Added after the first release (a database from before gets them on open).
ALTER TABLE license_counts ADD COLUMN IF NOT EXISTS inactive_users BIGINT;
ALTER TABLE license_counts ADD COLUMN IF NOT EXISTS disabled_users BIGINT;

-- Files a load wrote, per run (the export's manifest, queryable).
CREATE TABLE IF NOT EXISTS exports (
    run_id      VARCHAR,
    exported_at TIMESTAMP,
    dir         VARCHAR,
    file        VARCHAR,
    format      VARCHAR,
    rows        BIGINT,
    bytes       BIGINT,
    sha256      VARCHAR
);
