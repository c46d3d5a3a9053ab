-- getOffice365ActivationsUserDetail: one row per user and product type.
SELECT
    "Report Refresh Date [date]"              AS report_refresh_date,
    m365_text("User Principal Name")              AS user_principal_name,
    _user_key AS upn_key,
    _user_concealed      AS is_concealed,
    m365_text("Display Name")                     AS display_name,
    m365_text("Product Type")                     AS product_type,
    "Last Activated Date [date]"              AS last_activated_date,
    "Windows [int]"                           AS windows,
    "Mac [int]"                               AS mac,
    "Windows 10 Mobile [int]"                 AS windows_10_mobile,
    "iOS [int]"                               AS ios,
    "Android [int]"                           AS android,
    "Activated On Shared Computer [bool]"     AS activated_on_shared_computer,
    _row
FROM raw_office365_activations_user_detail
