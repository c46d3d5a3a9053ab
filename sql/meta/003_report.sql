-- Per-run aggregates for the run report (idempotent). The transform fills them for its run
-- (src/transform/persist.rs); sql/report/*.sql read them. A few dozen rows per run,
-- whatever the tenant size: never per-user data (but identity_hygiene's few examples).

-- Directory users active per service within the report period (int_usage_by_service).
CREATE TABLE IF NOT EXISTS usage_by_service (
    run_id          VARCHAR NOT NULL,
    ord             INTEGER,
    service         VARCHAR,
    users           BIGINT,
    active_users    BIGINT,     -- NULL when report names are concealed (unknown)
    report_period   VARCHAR,
    period_start    DATE,
    period_end      DATE
);

-- Users per week or month of last_seen_date, kept vs filtered out (int_last_seen_histogram).
CREATE TABLE IF NOT EXISTS last_seen_histogram (
    run_id          VARCHAR NOT NULL,
    ord             INTEGER,
    bucket          VARCHAR,    -- bucket start date, or earlier | later | unknown
    grain           VARCHAR,    -- week | month
    bucket_start    DATE,
    bucket_end      DATE,
    users           BIGINT,
    passed_filter   BIGINT,
    filtered_out    BIGINT
);

-- Office activations per platform and Microsoft 365 app usage (int_office_usage).
CREATE TABLE IF NOT EXISTS office_usage (
    run_id          VARCHAR NOT NULL,
    kind            VARCHAR,    -- activation | app | platform
    ord             INTEGER,
    item            VARCHAR,
    users           BIGINT,     -- NULL when report names are concealed (unknown)
    activations     BIGINT
);

-- Transform audits whose findings are warnings, not failures (e.g. shared emails).
CREATE TABLE IF NOT EXISTS audit_findings (
    run_id          VARCHAR NOT NULL,
    audit           VARCHAR,    -- e.g. audits/assert_people__shared_email
    rows            BIGINT
);

-- Identity hygiene: one row per check (managers, sign-ins, shared addresses, directory sync),
-- always nine per run (int_identity_hygiene). `examples` holds at most 10 short texts
-- (address: UPNs, or UPN: date), the only per-user values in these tables, bounded.
CREATE TABLE IF NOT EXISTS identity_hygiene (
    run_id          VARCHAR NOT NULL,
    ord             INTEGER,
    check_name      VARCHAR,    -- no_manager | manager_org_contact | manager_not_in_run_users |
                                -- no_recent_sign_in | shared_address | sync_cloud_only |
                                -- sync_synced | sync_no_longer_synced | stale_sync
    status          VARCHAR,    -- finding | ok | info | not_read (the run did not read it)
    users           BIGINT,     -- users the check found; NULL when not read
    of_users        BIGINT,     -- users it looked at (all, enabled, with a manager, synced)
    addresses       BIGINT,     -- shared_address: addresses two or more users carry
    since           DATE,       -- no_recent_sign_in, stale_sync: the cutoff (older is found)
    examples        VARCHAR[]   -- at most 10
);
