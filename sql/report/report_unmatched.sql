-- Usage-report rows that became part of no person (never people themselves), per reason.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    reason,
    CAST(sum(rows) AS BIGINT)     AS report_rows,
    count(DISTINCT report)        AS reports,
    min(explanation)              AS explanation
FROM report_rows_unmatched JOIN r USING (run_id)
GROUP BY reason
ORDER BY report_rows DESC, reason
