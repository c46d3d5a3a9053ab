-- getOneDriveUsageAccountDetail: keyed by the owner, not column 2.
SELECT
    m365_date("Report Refresh Date")           AS report_refresh_date,
    m365_text("Site URL")                      AS site_url,
    m365_text("Owner Display Name")            AS owner_display_name,
    m365_text("Owner Principal Name")          AS owner_principal_name,
    m365_user_key("Owner Principal Name") AS upn_key,
    m365_is_concealed("Owner Principal Name")  AS is_concealed,
    coalesce(m365_bool("Is Deleted"), false)   AS is_deleted,
    m365_date("Last Activity Date")            AS last_activity_date,
    m365_int("File Count")                     AS file_count,
    m365_int("Active File Count")              AS active_file_count,
    m365_int("Storage Used (Byte)")            AS storage_used_bytes,
    m365_int("Storage Allocated (Byte)")       AS storage_allocated_bytes,
    m365_int("Report Period")                  AS report_period,
    _row
FROM raw_onedrive_usage_account_detail
