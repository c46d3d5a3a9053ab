-- getSharePointActivityUserDetail: files viewed, synced, shared; pages visited.
SELECT
    "Report Refresh Date [date]"              AS report_refresh_date,
    m365_text("User Principal Name")              AS user_principal_name,
    _user_key AS upn_key,
    _user_concealed      AS is_concealed,
    coalesce("Is Deleted [bool]", false)      AS is_deleted,
    "Deleted Date [date]"                     AS deleted_date,
    "Last Activity Date [date]"               AS last_activity_date,
    "Viewed Or Edited File Count [int]"       AS viewed_or_edited_file_count,
    "Synced File Count [int]"                 AS synced_file_count,
    "Shared Internally File Count [int]"      AS shared_internally_file_count,
    "Shared Externally File Count [int]"      AS shared_externally_file_count,
    "Visited Page Count [int]"                AS visited_page_count,
    m365_text("Assigned Products")                AS assigned_products,
    "Report Period [int]"                     AS report_period,
    _row
FROM raw_sharepoint_activity_user_detail
