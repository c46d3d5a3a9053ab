-- Directory users active per service within the report period (int_report_period): a
-- service's last-activity date on or after period_start. One row per service, in display
-- order. `active_users` is NULL when report names are concealed: no report row could be
-- joined to a user, so activity is unknown rather than zero.
WITH p AS (
    SELECT * FROM int_report_period
),
counts AS (
    SELECT
        count(*) AS users,
        count(*) FILTER (WHERE exchange_last_activity_date   >= (SELECT period_start FROM p)) AS exchange,
        count(*) FILTER (WHERE onedrive_last_activity_date   >= (SELECT period_start FROM p)) AS onedrive,
        count(*) FILTER (WHERE sharepoint_last_activity_date >= (SELECT period_start FROM p)) AS sharepoint,
        count(*) FILTER (WHERE teams_last_activity_date      >= (SELECT period_start FROM p)) AS teams,
        count(*) FILTER (WHERE yammer_last_activity_date     >= (SELECT period_start FROM p)) AS yammer,
        count(*) FILTER (WHERE skype_last_activity_date      >= (SELECT period_start FROM p)) AS skype
    FROM int_people
),
services AS (
    SELECT 1 AS ord, 'Exchange' AS service, exchange AS active_users, users FROM counts
    UNION ALL SELECT 2, 'OneDrive', onedrive, users FROM counts
    UNION ALL SELECT 3, 'SharePoint', sharepoint, users FROM counts
    UNION ALL SELECT 4, 'Teams', teams, users FROM counts
    UNION ALL SELECT 5, 'Yammer', yammer, users FROM counts
    UNION ALL SELECT 6, 'Skype for Business', skype, users FROM counts
)
SELECT
    s.ord,
    s.service,
    CAST(s.users AS BIGINT) AS users,
    CAST(CASE WHEN NOT getvariable('concealed') THEN s.active_users END AS BIGINT) AS active_users,
    p.report_period,
    p.period_start,
    p.period_end
FROM services s CROSS JOIN p
ORDER BY s.ord
