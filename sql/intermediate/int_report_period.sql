-- The period the run's usage figures cover (one row). Microsoft's detail reports describe
-- the N days of `report_period` (D7, D30, D90, D180) ending at their refresh date, usually
-- two days before the run; without a refresh date the run date stands in. "Active within
-- the period" means a last-activity date on or after `period_start`. Used by
-- int_license_counts (inactive licence holders) and int_usage_by_service.
WITH p AS (
    SELECT
        getvariable('report_period') AS report_period,
        coalesce(TRY_CAST(substr(getvariable('report_period'), 2) AS INTEGER), 30) AS period_days,
        coalesce((SELECT max(report_refresh_date) FROM stg_reports__office365_active_user_detail),
                 getvariable('run_date')) AS period_end
)
SELECT
    report_period,
    period_days,
    CAST(period_end - (period_days - 1) AS DATE) AS period_start,
    CAST(period_end AS DATE)                     AS period_end
FROM p
