-- getTeamsUserActivityUserDetail: chats, calls, meetings; joinable by UPN and by User Id.
SELECT
    m365_date("Report Refresh Date")              AS report_refresh_date,
    m365_text("User Id")                          AS user_id,
    CASE WHEN NOT m365_is_concealed("User Id") AND NOT m365_is_concealed("User Principal Name")
         THEN lower(m365_text("User Id")) END     AS user_id_key,
    m365_text("User Principal Name")              AS user_principal_name,
    m365_user_key("User Principal Name") AS upn_key,
    m365_is_concealed("User Principal Name")      AS is_concealed,
    m365_date("Last Activity Date")               AS last_activity_date,
    coalesce(m365_bool("Is Deleted"), false)      AS is_deleted,
    m365_date("Deleted Date")                     AS deleted_date,
    m365_text("Assigned Products")                AS assigned_products,
    m365_int("Team Chat Message Count")           AS team_chat_message_count,
    m365_int("Private Chat Message Count")        AS private_chat_message_count,
    m365_int("Call Count")                        AS call_count,
    m365_int("Meeting Count")                     AS meeting_count,
    m365_int("Meetings Organized Count")          AS meetings_organized_count,
    m365_int("Meetings Attended Count")           AS meetings_attended_count,
    m365_int("Audio Duration In Seconds")         AS audio_duration_seconds,
    m365_int("Video Duration In Seconds")         AS video_duration_seconds,
    m365_int("Screen Share Duration In Seconds")  AS screen_share_duration_seconds,
    m365_bool("Is Licensed")                      AS is_licensed,
    m365_int("Report Period")                     AS report_period,
    _row
FROM raw_teams_user_activity_user_detail
