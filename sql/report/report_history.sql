-- The last 12 runs up to this one: status and counts, oldest first.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT * FROM (
    SELECT
        runs.run_id,
        status,
        strftime(started_at, '%Y-%m-%d %H:%M') AS started_at,
        users_fetched AS fetched,
        people_kept   AS kept,
        filtered_out,
        rejected,
        CAST(json_array_length(coalesce(warnings, '[]')) AS BIGINT) AS warnings,
        runs.run_id = r.run_id AS this_run
    FROM runs, r
    WHERE runs.run_id <= r.run_id
    ORDER BY runs.run_id DESC
    LIMIT 12
)
ORDER BY run_id
