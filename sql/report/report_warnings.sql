-- What an admin should read, with what to do: the run's error if it failed (missing
-- permissions and refused sign-ins say which and how to fix them), then the warnings recorded
-- with the run (`run_warnings`: the extract's, e.g. concealed names, throttling waits, missing
-- report columns, and the transform's, audit findings and rejected people; worded once, in
-- src/transform/warnings.rs, and the same list `run` prints). A run transformed before
-- `run_warnings` existed shows its extract's warnings until it is transformed again.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
),
run AS (
    SELECT runs.* FROM runs JOIN r USING (run_id)
),
recorded AS (
    SELECT 2 AS ord, w.seq, w.code, w.message, w.fix
    FROM run_warnings w JOIN r USING (run_id)
),
extract_only AS (
    SELECT 2 AS ord, w.i AS seq, w.x->>'code' AS code, w.x->>'message' AS message, w.x->>'fix' AS fix
    FROM run, unnest(CAST(coalesce(run.warnings, '[]') AS JSON[])) WITH ORDINALITY AS w(x, i)
    WHERE NOT EXISTS (SELECT 1 FROM recorded)
)
SELECT code, message, fix FROM (
    SELECT 1 AS ord, 0 AS seq, 'run_failed' AS code, error AS message,
        'the message says what failed and what to do; fix it and run again (earlier runs are untouched)' AS fix
    FROM run WHERE status = 'failed' OR error IS NOT NULL
    UNION ALL
    SELECT ord, seq, code, message, fix FROM recorded
    UNION ALL
    SELECT ord, seq, code, message, fix FROM extract_only
)
ORDER BY ord, seq
