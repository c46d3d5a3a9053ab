-- getSharePointActivityUserDetail: files viewed, synced, shared; pages visited.
SELECT
    m365_date("Report Refresh Date")              AS report_refresh_date,
    m365_text("User Principal Name")              AS user_principal_name,
    m365_user_key("User Principal Name") AS upn_key,
    m365_is_concealed("User Principal Name")      AS is_concealed,
    coalesce(m365_bool("Is Deleted"), false)      AS is_deleted,
    m365_date("Deleted Date")                     AS deleted_date,
    m365_date("Last Activity Date")               AS last_activity_date,
    m365_int("Viewed Or Edited File Count")       AS viewed_or_edited_file_count,
    m365_int("Synced File Count")                 AS synced_file_count,
    m365_int("Shared Internally File Count")      AS shared_internally_file_count,
    m365_int("Shared Externally File Count")      AS shared_externally_file_count,
    m365_int("Visited Page Count")                AS visited_page_count,
    m365_text("Assigned Products")                AS assigned_products,
    m365_int("Report Period")                     AS report_period,
    _row
FROM raw_sharepoint_activity_user_detail
