-- Seconds per stage of the run (NULL for a stage that did not run).
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
),
run AS (
    SELECT runs.* FROM runs JOIN r USING (run_id)
)
SELECT stage, seconds FROM (
    SELECT 1 AS ord, 'extract' AS stage, extract_seconds AS seconds FROM run
    UNION ALL SELECT 2, 'transform', transform_seconds FROM run
    UNION ALL SELECT 3, 'load', load_seconds FROM run
)
ORDER BY ord
