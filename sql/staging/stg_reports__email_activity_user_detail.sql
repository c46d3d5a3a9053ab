-- getEmailActivityUserDetail: mail sent, received, read; meetings.
SELECT
    "Report Refresh Date [date]"          AS report_refresh_date,
    m365_text("User Principal Name")          AS user_principal_name,
    _user_key AS upn_key,
    _user_concealed  AS is_concealed,
    m365_text("Display Name")                 AS display_name,
    coalesce("Is Deleted [bool]", false)  AS is_deleted,
    "Deleted Date [date]"                 AS deleted_date,
    "Last Activity Date [date]"           AS last_activity_date,
    "Send Count [int]"                    AS send_count,
    "Receive Count [int]"                 AS receive_count,
    "Read Count [int]"                    AS read_count,
    "Meeting Created Count [int]"         AS meeting_created_count,
    "Meeting Interacted Count [int]"      AS meeting_interacted_count,
    m365_text("Assigned Products")            AS assigned_products,
    "Report Period [int]"                 AS report_period,
    _row
FROM raw_email_activity_user_detail
