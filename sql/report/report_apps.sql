-- Microsoft 365 app usage in the report period: users per app (kind 'app') and per
-- platform they used any app on (kind 'platform'). NULL when names are concealed.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    kind || ':' || item AS item,
    kind,
    item AS name,
    users
FROM office_usage JOIN r USING (run_id)
WHERE kind IN ('app', 'platform')
ORDER BY ord
