-- getTeamsUserActivityUserDetail: chats, calls, meetings; joinable by UPN and by User Id.
SELECT
    "Report Refresh Date [date]"              AS report_refresh_date,
    m365_text("User Id")                          AS user_id,
    CASE WHEN NOT m365_is_concealed("User Id") AND NOT _user_concealed
         THEN lower(m365_text("User Id")) END     AS user_id_key,
    m365_text("User Principal Name")              AS user_principal_name,
    _user_key AS upn_key,
    _user_concealed      AS is_concealed,
    "Last Activity Date [date]"               AS last_activity_date,
    coalesce("Is Deleted [bool]", false)      AS is_deleted,
    "Deleted Date [date]"                     AS deleted_date,
    m365_text("Assigned Products")                AS assigned_products,
    "Team Chat Message Count [int]"           AS team_chat_message_count,
    "Private Chat Message Count [int]"        AS private_chat_message_count,
    "Call Count [int]"                        AS call_count,
    "Meeting Count [int]"                     AS meeting_count,
    "Meetings Organized Count [int]"          AS meetings_organized_count,
    "Meetings Attended Count [int]"           AS meetings_attended_count,
    "Audio Duration In Seconds [int]"         AS audio_duration_seconds,
    "Video Duration In Seconds [int]"         AS video_duration_seconds,
    "Screen Share Duration In Seconds [int]"  AS screen_share_duration_seconds,
    "Is Licensed [bool]"                      AS is_licensed,
    "Report Period [int]"                     AS report_period,
    _row
FROM raw_teams_user_activity_user_detail
