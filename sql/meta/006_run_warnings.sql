-- What an admin should read about a run, with what to do: the extract's warnings (concealed
-- names, throttling waits, missing report columns, ...), then the transform's (audit findings
-- that are warnings, rejected people). Written once per transform (src/transform/warnings.rs
-- words them, src/store/runs.rs writes them); `run`'s summary and the run report
-- (sql/report/report_warnings.sql) both select them from here.
CREATE TABLE IF NOT EXISTS run_warnings (
    run_id  VARCHAR NOT NULL,
    seq     INTEGER NOT NULL,
    code    VARCHAR NOT NULL,
    message VARCHAR NOT NULL,
    fix     VARCHAR NOT NULL,
    PRIMARY KEY (run_id, seq)
);
