-- What an admin should read, with what to do: the run's warnings (concealed names,
-- throttling waits, missing report columns, …), its error if it failed (missing permissions
-- and refused sign-ins say which and how to fix them), audit findings that are warnings
-- (e.g. emails shared by several people) and rejected people.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
),
run AS (
    SELECT runs.* FROM runs JOIN r USING (run_id)
),
listed AS (
    SELECT 2 AS ord, w.i AS seq, w.x->>'code' AS code, w.x->>'message' AS message, w.x->>'fix' AS fix
    FROM run, unnest(CAST(coalesce(run.warnings, '[]') AS JSON[])) WITH ORDINALITY AS w(x, i)
)
SELECT code, message, fix FROM (
    SELECT 1 AS ord, 0 AS seq, 'run_failed' AS code, error AS message,
        'the message says what failed and what to do; fix it and run again (earlier runs are untouched)' AS fix
    FROM run WHERE status = 'failed' OR error IS NOT NULL
    UNION ALL
    SELECT ord, seq, code, message, fix FROM listed
    UNION ALL
    SELECT 3, row_number() OVER (ORDER BY a.audit), regexp_extract(a.audit, '[^/]*$'),
        a.rows || ' findings of sql/' || a.audit || '.sql',
        'query them: m365-connector sql -c FILE "$(cat sql/' || a.audit || '.sql)"'
    FROM audit_findings a JOIN r USING (run_id)
    UNION ALL
    SELECT 4, 0, 'rejects',
        rejected || ' people were rejected (missing required attributes or duplicate keys)',
        'see them with: m365-connector sql -c FILE "SELECT * FROM rejects"'
    FROM run WHERE rejected > 0
)
ORDER BY ord, seq
