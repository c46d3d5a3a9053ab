-- Run bookkeeping (idempotent). A run is a row, inserted as 'running' first and marked
-- 'succeeded' only after its data is durable (dlt/Airbyte style). Never holds a secret.
CREATE TABLE IF NOT EXISTS runs (
    run_id              VARCHAR PRIMARY KEY,
    connector           VARCHAR NOT NULL,
    server              VARCHAR,
    tenant_id           VARCHAR,
    status              VARCHAR NOT NULL,   -- running | succeeded | failed
    extract_status      VARCHAR,            -- running | succeeded | failed | NULL (not run)
    transform_status    VARCHAR,
    load_status         VARCHAR,
    started_at          TIMESTAMP NOT NULL,
    finished_at         TIMESTAMP,
    run_date            DATE,               -- UTC date the extract started: the date filter's day
    date_filter_days    INTEGER,
    report_period       VARCHAR,
    extract_seconds     DOUBLE,
    transform_seconds   DOUBLE,
    load_seconds        DOUBLE,
    users_fetched       BIGINT,
    people_kept         BIGINT,
    filtered_out        BIGINT,
    rejected            BIGINT,
    requests            BIGINT,
    retries             BIGINT,
    throttled           BIGINT,
    waited_ms           BIGINT,
    concealed_names     BOOLEAN,
    warnings            JSON,               -- [{code, message, fix}]
    error               VARCHAR,
    config_fingerprint  VARCHAR,            -- sha256 of the config without the secret
    mapping_sha256      VARCHAR,
    sql_sha256          VARCHAR
);

-- Per-stream extract figures.
CREATE TABLE IF NOT EXISTS run_streams (
    run_id      VARCHAR NOT NULL,
    stream      VARCHAR NOT NULL,
    rows        BIGINT,
    pages       BIGINT,
    requests    BIGINT,
    retries     BIGINT,
    throttled   BIGINT,
    waited_ms   BIGINT,
    PRIMARY KEY (run_id, stream)
);

-- Added after the first release (a database from before gets them on open).
ALTER TABLE runs ADD COLUMN IF NOT EXISTS stalled BIGINT;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS stalled_ms BIGINT;
-- Requests cut at their deadline (a trickle or no answer), apart from throttling.
ALTER TABLE run_streams ADD COLUMN IF NOT EXISTS stalled BIGINT;
ALTER TABLE run_streams ADD COLUMN IF NOT EXISTS stalled_ms BIGINT;
-- Records listed more than once (users by id, report rows by user): extra identical copies,
-- and keys whose copies differ (the latest page's copy is kept).
ALTER TABLE run_streams ADD COLUMN IF NOT EXISTS duplicates BIGINT;
ALTER TABLE run_streams ADD COLUMN IF NOT EXISTS duplicates_changed BIGINT;

-- Files landed by the extract stage (immutable once committed).
CREATE TABLE IF NOT EXISTS landed_files (
    run_id      VARCHAR NOT NULL,
    stream      VARCHAR NOT NULL,
    file        VARCHAR NOT NULL,
    rows        BIGINT,
    bytes       BIGINT,
    sha256      VARCHAR,
    PRIMARY KEY (run_id, file)
);

-- One row per model/step executed by a transform (or load) of a run.
CREATE TABLE IF NOT EXISTS run_steps (
    run_id      VARCHAR NOT NULL,
    seq         INTEGER NOT NULL,
    stage       VARCHAR NOT NULL,
    step        VARCHAR NOT NULL,    -- e.g. staging/stg_graph__users
    rows        BIGINT,
    seconds     DOUBLE,
    finished_at TIMESTAMP,
    PRIMARY KEY (run_id, stage, seq)
);
