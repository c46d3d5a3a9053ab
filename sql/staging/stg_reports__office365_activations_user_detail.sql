-- getOffice365ActivationsUserDetail: one row per user and product type.
SELECT
    m365_date("Report Refresh Date")              AS report_refresh_date,
    m365_text("User Principal Name")              AS user_principal_name,
    m365_user_key("User Principal Name") AS upn_key,
    m365_is_concealed("User Principal Name")      AS is_concealed,
    m365_text("Display Name")                     AS display_name,
    m365_text("Product Type")                     AS product_type,
    m365_date("Last Activated Date")              AS last_activated_date,
    m365_int("Windows")                           AS windows,
    m365_int("Mac")                               AS mac,
    m365_int("Windows 10 Mobile")                 AS windows_10_mobile,
    m365_int("iOS")                               AS ios,
    m365_int("Android")                           AS android,
    m365_bool("Activated On Shared Computer")     AS activated_on_shared_computer,
    _row
FROM raw_office365_activations_user_detail
