-- Office activations by platform: users with at least one activation there, and the
-- activations (Mobile = iOS + Android + Windows 10 Mobile). NULL when names are concealed.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    item AS platform,
    users,
    activations
FROM office_usage JOIN r USING (run_id)
WHERE kind = 'activation'
ORDER BY ord
