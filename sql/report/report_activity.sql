-- Directory users active per service within the report period (last activity on or after
-- period_start). `active_users` is NULL when report names are concealed.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    service,
    users,
    active_users,
    CASE WHEN users > 0 THEN round(100.0 * active_users / users, 1) END AS active_pct,
    period_start,
    period_end
FROM usage_by_service JOIN r USING (run_id)
ORDER BY ord
