-- getOneDriveUsageAccountDetail: keyed by the owner, not column 2.
SELECT
    "Report Refresh Date [date]"           AS report_refresh_date,
    m365_text("Site URL")                      AS site_url,
    m365_text("Owner Display Name")            AS owner_display_name,
    m365_text("Owner Principal Name")          AS owner_principal_name,
    _user_key AS upn_key,
    _user_concealed  AS is_concealed,
    coalesce("Is Deleted [bool]", false)   AS is_deleted,
    "Last Activity Date [date]"            AS last_activity_date,
    "File Count [int]"                     AS file_count,
    "Active File Count [int]"              AS active_file_count,
    "Storage Used (Byte) [int]"            AS storage_used_bytes,
    "Storage Allocated (Byte) [int]"       AS storage_allocated_bytes,
    "Report Period [int]"                  AS report_period,
    _row
FROM raw_onedrive_usage_account_detail
