-- Report header: which run, what it was asked to do, and how it ended.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    runs.run_id,
    connector,
    tenant_id,
    server,
    status,
    extract_status,
    transform_status,
    load_status,
    strftime(started_at, '%Y-%m-%d %H:%M:%S UTC')  AS started_at,
    strftime(finished_at, '%Y-%m-%d %H:%M:%S UTC') AS finished_at,
    run_date,
    date_filter_days,
    CASE WHEN date_filter_days > 0 THEN run_date - date_filter_days END AS date_filter_cutoff,
    report_period,
    coalesce(concealed_names, false) AS concealed_names,
    requests,
    retries,
    throttled,
    round(waited_ms / 1000.0, 1) AS waited_seconds,
    coalesce(stalled, 0) AS stalled,
    round(coalesce(stalled_ms, 0) / 1000.0, 1) AS stalled_seconds,
    error
FROM runs JOIN r USING (run_id)
