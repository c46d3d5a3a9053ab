-- getEmailActivityUserDetail: mail sent, received, read; meetings.
SELECT
    m365_date("Report Refresh Date")          AS report_refresh_date,
    m365_text("User Principal Name")          AS user_principal_name,
    m365_user_key("User Principal Name") AS upn_key,
    m365_is_concealed("User Principal Name")  AS is_concealed,
    m365_text("Display Name")                 AS display_name,
    coalesce(m365_bool("Is Deleted"), false)  AS is_deleted,
    m365_date("Deleted Date")                 AS deleted_date,
    m365_date("Last Activity Date")           AS last_activity_date,
    m365_int("Send Count")                    AS send_count,
    m365_int("Receive Count")                 AS receive_count,
    m365_int("Read Count")                    AS read_count,
    m365_int("Meeting Created Count")         AS meeting_created_count,
    m365_int("Meeting Interacted Count")      AS meeting_interacted_count,
    m365_text("Assigned Products")            AS assigned_products,
    m365_int("Report Period")                 AS report_period,
    _row
FROM raw_email_activity_user_detail
