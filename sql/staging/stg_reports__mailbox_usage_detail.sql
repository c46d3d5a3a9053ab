-- getMailboxUsageDetail: mailbox size and quotas (user and shared mailboxes).
SELECT
    m365_date("Report Refresh Date")                AS report_refresh_date,
    m365_text("User Principal Name")                AS user_principal_name,
    m365_user_key("User Principal Name") AS upn_key,
    m365_is_concealed("User Principal Name")        AS is_concealed,
    m365_text("Display Name")                       AS display_name,
    coalesce(m365_bool("Is Deleted"), false)        AS is_deleted,
    m365_date("Deleted Date")                       AS deleted_date,
    m365_date("Created Date")                       AS created_date,
    m365_date("Last Activity Date")                 AS last_activity_date,
    m365_int("Item Count")                          AS item_count,
    m365_int("Storage Used (Byte)")                 AS storage_used_bytes,
    m365_int("Issue Warning Quota (Byte)")          AS issue_warning_quota_bytes,
    m365_int("Prohibit Send Quota (Byte)")          AS prohibit_send_quota_bytes,
    m365_int("Prohibit Send/Receive Quota (Byte)")  AS prohibit_send_receive_quota_bytes,
    m365_int("Deleted Item Count")                  AS deleted_item_count,
    m365_int("Deleted Item Size (Byte)")            AS deleted_item_size_bytes,
    m365_int("Deleted Item Quota (Byte)")           AS deleted_item_quota_bytes,
    m365_bool("Has Archive")                        AS has_archive,
    m365_int("Report Period")                       AS report_period,
    _row
FROM raw_mailbox_usage_detail
