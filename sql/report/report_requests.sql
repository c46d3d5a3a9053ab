-- Graph requests per stream: rows and pages read, requests sent, retries, throttling
-- responses and the time spent waiting on them, requests cut at their deadline (stalls,
-- not throttling) and records listed more than once.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    stream,
    rows,
    pages,
    requests,
    retries,
    throttled,
    round(waited_ms / 1000.0, 1) AS waited_seconds,
    coalesce(stalled, 0) AS stalled,
    round(coalesce(stalled_ms, 0) / 1000.0, 1) AS stalled_seconds,
    coalesce(duplicates, 0) AS duplicates
FROM run_streams JOIN r USING (run_id)
ORDER BY stream
