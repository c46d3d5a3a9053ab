-- getMailboxUsageDetail: mailbox size and quotas (user and shared mailboxes).
SELECT
    "Report Refresh Date [date]"                AS report_refresh_date,
    m365_text("User Principal Name")                AS user_principal_name,
    _user_key AS upn_key,
    _user_concealed        AS is_concealed,
    m365_text("Display Name")                       AS display_name,
    coalesce("Is Deleted [bool]", false)        AS is_deleted,
    "Deleted Date [date]"                       AS deleted_date,
    "Created Date [date]"                       AS created_date,
    "Last Activity Date [date]"                 AS last_activity_date,
    "Item Count [int]"                          AS item_count,
    "Storage Used (Byte) [int]"                 AS storage_used_bytes,
    "Issue Warning Quota (Byte) [int]"          AS issue_warning_quota_bytes,
    "Prohibit Send Quota (Byte) [int]"          AS prohibit_send_quota_bytes,
    "Prohibit Send/Receive Quota (Byte) [int]"  AS prohibit_send_receive_quota_bytes,
    "Deleted Item Count [int]"                  AS deleted_item_count,
    "Deleted Item Size (Byte) [int]"            AS deleted_item_size_bytes,
    "Deleted Item Quota (Byte) [int]"           AS deleted_item_quota_bytes,
    "Has Archive [bool]"                        AS has_archive,
    "Report Period [int]"                       AS report_period,
    _row
FROM raw_mailbox_usage_detail
