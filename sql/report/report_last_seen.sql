-- Histogram of last_seen_date (the date filter's input): users per week or month, split
-- into those the date filter kept and those it filtered out. `earlier` holds older dates,
-- `unknown` users without any date, `later` dates after the run (clock skew).
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    bucket,
    grain,
    bucket_start,
    bucket_end,
    users,
    passed_filter,
    filtered_out
FROM last_seen_histogram JOIN r USING (run_id)
ORDER BY ord
