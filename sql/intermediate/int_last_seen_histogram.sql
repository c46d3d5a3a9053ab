-- A bounded histogram of `last_seen_date` (the date filter's input), split into the users
-- the date filter kept and those it filtered out. The window reaches back twice the filter
-- (at least 91 days, at most 3 years) from the run date, in weekly buckets (from Mondays)
-- up to 26 weeks and monthly buckets beyond. Older dates fall in one `earlier` bucket, dates
-- after the run date's bucket (clock skew) in `later`, and users without any date in
-- `unknown`: a run never has more than 41 rows, whatever its size.
WITH params AS (
    SELECT
        getvariable('run_date') AS run_date,
        least(greatest(2 * CAST(getvariable('date_filter_days') AS INTEGER), 91), 1096) AS window_days
),
grain AS (
    SELECT
        run_date,
        CASE WHEN window_days <= 182 THEN 'week' ELSE 'month' END AS grain,
        CAST(date_trunc(CASE WHEN window_days <= 182 THEN 'week' ELSE 'month' END,
                        run_date - window_days) AS DATE) AS first_bucket,
        CAST(date_trunc(CASE WHEN window_days <= 182 THEN 'week' ELSE 'month' END,
                        run_date) AS DATE) AS last_bucket
    FROM params
),
buckets AS (
    SELECT
        CAST(t.b AS DATE) AS bucket_start,
        CAST(CASE g.grain WHEN 'week' THEN t.b + INTERVAL 6 DAY
                          ELSE t.b + INTERVAL 1 MONTH - INTERVAL 1 DAY END AS DATE) AS bucket_end
    FROM grain g,
        generate_series(CAST(g.first_bucket AS TIMESTAMP), CAST(g.last_bucket AS TIMESTAMP),
                        CASE g.grain WHEN 'week' THEN INTERVAL 7 DAY ELSE INTERVAL 1 MONTH END) AS t(b)
),
users AS (
    SELECT
        CASE
            WHEN i.last_seen_date IS NULL THEN 'unknown'
            WHEN i.last_seen_date < g.first_bucket THEN 'earlier'
            WHEN CAST(date_trunc(g.grain, i.last_seen_date) AS DATE) > g.last_bucket THEN 'later'
            ELSE strftime(CAST(date_trunc(g.grain, i.last_seen_date) AS DATE), '%Y-%m-%d')
        END AS bucket,
        i.kept_by_date_filter
    FROM int_people i CROSS JOIN grain g
),
counts AS (
    SELECT bucket,
        count(*) FILTER (WHERE kept_by_date_filter)     AS passed_filter,
        count(*) FILTER (WHERE NOT kept_by_date_filter) AS filtered_out
    FROM users
    GROUP BY bucket
),
all_buckets AS (
    SELECT 0 AS ord, 'unknown' AS bucket, NULL::DATE AS bucket_start, NULL::DATE AS bucket_end
    UNION ALL
    SELECT 1, 'earlier', NULL::DATE, (SELECT first_bucket - 1 FROM grain)
    UNION ALL
    SELECT 1 + row_number() OVER (ORDER BY bucket_start), strftime(bucket_start, '%Y-%m-%d'),
           bucket_start, bucket_end
    FROM buckets
    UNION ALL
    SELECT 1000, 'later', (SELECT max(bucket_end) + 1 FROM buckets), NULL::DATE
)
SELECT
    CAST(b.ord AS INTEGER)                                  AS ord,
    b.bucket,
    (SELECT grain FROM grain)                               AS grain,
    b.bucket_start,
    b.bucket_end,
    CAST(coalesce(c.passed_filter, 0) + coalesce(c.filtered_out, 0) AS BIGINT) AS users,
    CAST(coalesce(c.passed_filter, 0) AS BIGINT)            AS passed_filter,
    CAST(coalesce(c.filtered_out, 0) AS BIGINT)             AS filtered_out
FROM all_buckets b
LEFT JOIN counts c USING (bucket)
ORDER BY b.ord
