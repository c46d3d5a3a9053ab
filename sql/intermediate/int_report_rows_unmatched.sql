-- Report rows that became part of no person, counted per report and reason, so nothing is
-- dropped silently: deleted accounts (Is Deleted = True), users only in reports (not in the
-- directory), "(Unknown)" users, and concealed names.
WITH report_rows AS (
    SELECT 'office365_active_user_detail' AS report, user_principal_name, upn_key, NULL AS user_id_key, is_concealed, is_deleted FROM stg_reports__office365_active_user_detail
    UNION ALL
    SELECT 'office365_activations_user_detail', user_principal_name, upn_key, NULL, is_concealed, false FROM stg_reports__office365_activations_user_detail
    UNION ALL
    SELECT 'm365_app_user_detail', user_principal_name, upn_key, NULL, is_concealed, false FROM stg_reports__m365_app_user_detail
    UNION ALL
    SELECT 'mailbox_usage_detail', user_principal_name, upn_key, NULL, is_concealed, is_deleted FROM stg_reports__mailbox_usage_detail
    UNION ALL
    SELECT 'email_activity_user_detail', user_principal_name, upn_key, NULL, is_concealed, is_deleted FROM stg_reports__email_activity_user_detail
    UNION ALL
    SELECT 'onedrive_usage_account_detail', owner_principal_name, upn_key, NULL, is_concealed, is_deleted FROM stg_reports__onedrive_usage_account_detail
    UNION ALL
    SELECT 'sharepoint_activity_user_detail', user_principal_name, upn_key, NULL, is_concealed, is_deleted FROM stg_reports__sharepoint_activity_user_detail
    UNION ALL
    SELECT 'teams_user_activity_user_detail', user_principal_name, upn_key, user_id_key, is_concealed, is_deleted FROM stg_reports__teams_user_activity_user_detail
),
-- Directory keys, each once: a report row is "not in directory" when neither its UPN nor its
-- user id is one (two hash joins over the rows, not a correlated lookup per row).
user_keys AS (SELECT DISTINCT upn_key FROM stg_graph__users WHERE upn_key IS NOT NULL),
user_ids AS (SELECT DISTINCT lower(id) AS user_id_key FROM stg_graph__users WHERE id IS NOT NULL),
classified AS (
    SELECT r.report,
        CASE
            WHEN getvariable('concealed') OR r.is_concealed THEN 'concealed name'
            WHEN r.user_principal_name IS NULL THEN 'no user name'
            WHEN r.upn_key = '(unknown)' THEN 'unknown user'  -- upn_key: the trimmed name, lower-cased
            WHEN r.is_deleted THEN 'deleted account'
            WHEN k.upn_key IS NULL AND i.user_id_key IS NULL THEN 'not in directory'
        END AS reason
    FROM report_rows r
    LEFT JOIN user_keys k ON k.upn_key = r.upn_key
    LEFT JOIN user_ids i ON i.user_id_key = r.user_id_key
)
SELECT report, reason, count(*) AS rows,
    CASE reason
        WHEN 'concealed name' THEN 'report names are concealed; see the run warning for the admin-center fix'
        WHEN 'no user name' THEN 'the report row has no user name'
        WHEN 'unknown user' THEN 'Microsoft reports some new users as (Unknown) until their profile is created'
        WHEN 'deleted account' THEN 'usage of a deleted account (kept by Microsoft for up to 30 days); not a person'
        WHEN 'not in directory' THEN 'the report names a user the /users walk did not return (deleted since, or renamed)'
    END AS explanation
FROM classified
WHERE reason IS NOT NULL
GROUP BY ALL
ORDER BY report, reason
