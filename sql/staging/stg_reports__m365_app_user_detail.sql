-- getM365AppUserDetail: which Microsoft 365 apps a user used, per platform.
SELECT
    "Report Refresh Date [date]"      AS report_refresh_date,
    m365_text("User Principal Name")      AS user_principal_name,
    _user_key AS upn_key,
    _user_concealed AS is_concealed,
    "Last Activation Date [date]"     AS last_activation_date,
    "Last Activity Date [date]"       AS last_activity_date,
    "Report Period [int]"             AS report_period,
    "Windows [bool]"                  AS windows,
    "Mac [bool]"                      AS mac,
    "Mobile [bool]"                   AS mobile,
    "Web [bool]"                      AS web,
    "Outlook [bool]"                  AS outlook,
    "Word [bool]"                     AS word,
    "Excel [bool]"                    AS excel,
    "PowerPoint [bool]"               AS powerpoint,
    "OneNote [bool]"                  AS onenote,
    "Teams [bool]"                    AS teams,
    _row
FROM raw_m365_app_user_detail
