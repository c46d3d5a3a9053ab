-- The funnel of a run: users fetched from Graph → left out by the date filter → rejected
-- (see report_rejects.sql for why) → exported as people.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    users_fetched                        AS fetched,
    filtered_out,
    users_fetched - filtered_out         AS passed_filter,
    rejected,
    people_kept                          AS kept
FROM runs JOIN r USING (run_id)
