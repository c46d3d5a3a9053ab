-- getM365AppUserDetail: which Microsoft 365 apps a user used, per platform.
SELECT
    m365_date("Report Refresh Date")      AS report_refresh_date,
    m365_text("User Principal Name")      AS user_principal_name,
    m365_user_key("User Principal Name") AS upn_key,
    m365_is_concealed("User Principal Name") AS is_concealed,
    m365_date("Last Activation Date")     AS last_activation_date,
    m365_date("Last Activity Date")       AS last_activity_date,
    m365_int("Report Period")             AS report_period,
    m365_bool("Windows")                  AS windows,
    m365_bool("Mac")                      AS mac,
    m365_bool("Mobile")                   AS mobile,
    m365_bool("Web")                      AS web,
    m365_bool("Outlook")                  AS outlook,
    m365_bool("Word")                     AS word,
    m365_bool("Excel")                    AS excel,
    m365_bool("PowerPoint")               AS powerpoint,
    m365_bool("OneNote")                  AS onenote,
    m365_bool("Teams")                    AS teams,
    _row
FROM raw_m365_app_user_detail
