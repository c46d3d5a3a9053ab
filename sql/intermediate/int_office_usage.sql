-- Office activations by platform and Microsoft 365 app usage of the directory users, joined
-- by the same rule as int_people (lower-cased UPN, never when names are concealed).
--   kind 'activation': users with at least one Office activation on the platform, and the
--     activations counted (Mobile = iOS + Android + Windows 10 Mobile);
--   kind 'app': users who used the app within the report period;
--   kind 'platform': users who used any Microsoft 365 app on the platform.
-- `users` and `activations` are NULL when report names are concealed (unknown, not zero).
WITH apps AS (
    SELECT a.upn_key,
        bool_or(a.outlook) AS outlook, bool_or(a.word) AS word, bool_or(a.excel) AS excel,
        bool_or(a.powerpoint) AS powerpoint, bool_or(a.onenote) AS onenote, bool_or(a.teams) AS teams
    FROM stg_reports__m365_app_user_detail a
    WHERE NOT getvariable('concealed') AND a.upn_key IN (SELECT upn_key FROM int_people)
    GROUP BY a.upn_key
),
figures AS (
    SELECT 'activation' AS kind, 1 AS ord, 'Windows' AS item,
        count(*) FILTER (WHERE office_activations_windows > 0) AS users,
        sum(office_activations_windows) AS activations
    FROM int_people
    UNION ALL
    SELECT 'activation', 2, 'Mac', count(*) FILTER (WHERE office_activations_mac > 0),
        sum(office_activations_mac)
    FROM int_people
    UNION ALL
    SELECT 'activation', 3, 'Mobile', count(*) FILTER (WHERE office_activations_mobile > 0),
        sum(office_activations_mobile)
    FROM int_people
    UNION ALL SELECT 'app', 11, 'Outlook', count(*) FILTER (WHERE outlook), NULL FROM apps
    UNION ALL SELECT 'app', 12, 'Word', count(*) FILTER (WHERE word), NULL FROM apps
    UNION ALL SELECT 'app', 13, 'Excel', count(*) FILTER (WHERE excel), NULL FROM apps
    UNION ALL SELECT 'app', 14, 'PowerPoint', count(*) FILTER (WHERE powerpoint), NULL FROM apps
    UNION ALL SELECT 'app', 15, 'OneNote', count(*) FILTER (WHERE onenote), NULL FROM apps
    UNION ALL SELECT 'app', 16, 'Teams', count(*) FILTER (WHERE teams), NULL FROM apps
    UNION ALL
    SELECT 'platform', 21, 'Windows', count(*) FILTER (WHERE apps_used_windows), NULL FROM int_people
    UNION ALL
    SELECT 'platform', 22, 'Mac', count(*) FILTER (WHERE apps_used_mac), NULL FROM int_people
    UNION ALL
    SELECT 'platform', 23, 'Mobile', count(*) FILTER (WHERE apps_used_mobile), NULL FROM int_people
    UNION ALL
    SELECT 'platform', 24, 'Web', count(*) FILTER (WHERE apps_used_web), NULL FROM int_people
)
SELECT
    kind,
    CAST(ord AS INTEGER) AS ord,
    item,
    CAST(CASE WHEN NOT getvariable('concealed') THEN users END AS BIGINT) AS users,
    CAST(CASE WHEN NOT getvariable('concealed') THEN
             CASE WHEN kind = 'activation' THEN coalesce(activations, 0) END END AS BIGINT) AS activations
FROM figures
ORDER BY ord
