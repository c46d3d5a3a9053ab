-- One row per directory user with every column a mapping may use: directory attributes,
-- licences, per-service activity from the usage reports, `last_seen_date`, and the date
-- filter. THE DATE FILTER LIVES HERE AND NOWHERE ELSE (DESIGN.md "Date filter"):
--
--   kept iff date_filter_days = 0 OR last_seen_date >= run_date - date_filter_days
--
--   last_seen_date = greatest of createdDateTime, lastPasswordChangeDateTime, signInActivity's
--   three sign-in dates (when `[pipeline] sign_in_activity` read them), and every report's
--   "Last Activity Date" and "License Assign Date" for the user.
--
-- The manager comes from int_managers (resolved by id over the whole run), sign-ins from
-- stg_graph__user_sign_ins; both by id. Mail aliases are the `smtp:` entries of
-- proxyAddresses (`SMTP:` is the primary address).
--
-- Reports join by lower-cased UPN (OneDrive by Owner Principal Name; Teams also by User Id).
-- Rows of deleted accounts (Is Deleted = True) are never joined. When the run's report names
-- are concealed, no report row is joined at all: hashed names never become attribute values,
-- activity columns stay NULL, and the filter falls back to directory dates.
--
-- Large tenants run this model in parts (src/transform/runner.rs): each run sees only the users, and
-- the report rows, whose UPN falls in part `getvariable('part')` (m365_in_part), so its hash
-- tables fit `[pipeline] memory_limit_mib` whatever the tenant's size. Every users or report
-- source must keep that filter, or a part would repeat other parts' users.
WITH
active AS (
    SELECT upn_key,
        max(exchange_last_activity_date)   AS exchange_last_activity_date,
        max(onedrive_last_activity_date)   AS onedrive_last_activity_date,
        max(sharepoint_last_activity_date) AS sharepoint_last_activity_date,
        max(skype_last_activity_date)      AS skype_last_activity_date,
        max(yammer_last_activity_date)     AS yammer_last_activity_date,
        max(teams_last_activity_date)      AS teams_last_activity_date,
        greatest(max(exchange_license_assign_date), max(onedrive_license_assign_date),
                 max(sharepoint_license_assign_date), max(skype_license_assign_date),
                 max(yammer_license_assign_date), max(teams_license_assign_date))
                                           AS latest_license_assign_date,
        bool_or(has_exchange_license)      AS has_exchange_license,
        bool_or(has_onedrive_license)      AS has_onedrive_license,
        bool_or(has_sharepoint_license)    AS has_sharepoint_license,
        bool_or(has_teams_license)         AS has_teams_license,
        max(assigned_products)             AS report_assigned_products,
        max(report_refresh_date)           AS report_refresh_date
    FROM stg_reports__office365_active_user_detail
    WHERE NOT getvariable('concealed') AND upn_key IS NOT NULL AND m365_in_part(upn_key) AND NOT is_deleted
    GROUP BY upn_key
),
activations AS (
    SELECT upn_key,
        max(last_activated_date)                        AS office_last_activated_date,
        sum(coalesce(windows, 0))                       AS office_activations_windows,
        sum(coalesce(mac, 0))                           AS office_activations_mac,
        sum(coalesce(windows_10_mobile, 0) + coalesce(ios, 0) + coalesce(android, 0))
                                                        AS office_activations_mobile,
        list(DISTINCT product_type ORDER BY product_type) FILTER (WHERE product_type IS NOT NULL)
                                                        AS office_activated_products
    FROM stg_reports__office365_activations_user_detail
    WHERE NOT getvariable('concealed') AND upn_key IS NOT NULL AND m365_in_part(upn_key)
    GROUP BY upn_key
),
apps AS (
    SELECT upn_key,
        max(last_activity_date)   AS apps_last_activity_date,
        max(last_activation_date) AS apps_last_activation_date,
        bool_or(windows) AS apps_used_windows, bool_or(mac) AS apps_used_mac,
        bool_or(mobile) AS apps_used_mobile, bool_or(web) AS apps_used_web,
        (coalesce(bool_or(outlook), false)::INT + coalesce(bool_or(word), false)::INT
         + coalesce(bool_or(excel), false)::INT + coalesce(bool_or(powerpoint), false)::INT
         + coalesce(bool_or(onenote), false)::INT + coalesce(bool_or(teams), false)::INT)
                                  AS apps_used_count
    FROM stg_reports__m365_app_user_detail
    WHERE NOT getvariable('concealed') AND upn_key IS NOT NULL AND m365_in_part(upn_key)
    GROUP BY upn_key
),
mailbox AS (
    SELECT upn_key,
        max(last_activity_date)  AS mailbox_last_activity_date,
        max(storage_used_bytes)  AS mailbox_storage_used_bytes,
        max(item_count)          AS mailbox_item_count,
        bool_or(has_archive)     AS mailbox_has_archive
    FROM stg_reports__mailbox_usage_detail
    WHERE NOT getvariable('concealed') AND upn_key IS NOT NULL AND m365_in_part(upn_key) AND NOT is_deleted
    GROUP BY upn_key
),
email AS (
    SELECT upn_key,
        max(last_activity_date) AS email_last_activity_date,
        sum(send_count)         AS email_send_count,
        sum(receive_count)      AS email_receive_count,
        sum(read_count)         AS email_read_count
    FROM stg_reports__email_activity_user_detail
    WHERE NOT getvariable('concealed') AND upn_key IS NOT NULL AND m365_in_part(upn_key) AND NOT is_deleted
    GROUP BY upn_key
),
onedrive AS (
    SELECT upn_key,
        max(last_activity_date)  AS onedrive_report_last_activity_date,
        max(storage_used_bytes)  AS onedrive_storage_used_bytes,
        sum(file_count)          AS onedrive_file_count
    FROM stg_reports__onedrive_usage_account_detail
    WHERE NOT getvariable('concealed') AND upn_key IS NOT NULL AND m365_in_part(upn_key) AND NOT is_deleted
    GROUP BY upn_key
),
sharepoint AS (
    SELECT upn_key,
        max(last_activity_date)          AS sharepoint_report_last_activity_date,
        sum(viewed_or_edited_file_count) AS sharepoint_viewed_or_edited_file_count,
        sum(visited_page_count)          AS sharepoint_visited_page_count
    FROM stg_reports__sharepoint_activity_user_detail
    WHERE NOT getvariable('concealed') AND upn_key IS NOT NULL AND m365_in_part(upn_key) AND NOT is_deleted
    GROUP BY upn_key
),
teams_rows AS (
    -- Teams rows match a user by User Id or by UPN; UNION keeps each (user, row) once.
    SELECT u.id, t._row
    FROM stg_graph__users u JOIN stg_reports__teams_user_activity_user_detail t ON t.user_id_key = lower(u.id)
    WHERE NOT getvariable('concealed') AND NOT t.is_deleted AND m365_in_part(u.upn_key)
    UNION
    SELECT u.id, t._row
    FROM stg_graph__users u JOIN stg_reports__teams_user_activity_user_detail t ON t.upn_key = u.upn_key
    WHERE NOT getvariable('concealed') AND NOT t.is_deleted AND m365_in_part(u.upn_key)
),
teams AS (
    SELECT r.id,
        max(t.last_activity_date)          AS teams_report_last_activity_date,
        sum(t.team_chat_message_count)     AS teams_chat_message_count,
        sum(t.private_chat_message_count)  AS teams_private_chat_message_count,
        sum(t.call_count)                  AS teams_call_count,
        sum(t.meeting_count)               AS teams_meeting_count
    FROM teams_rows r JOIN stg_reports__teams_user_activity_user_detail t USING (_row)
    GROUP BY r.id
),
-- Licence names without grouping users: one small map from SKU id to (name, part number),
-- the tenant's own names first, then the shipped list; an unknown SKU keeps its id.
sku_map AS (
    SELECT map_from_entries(list((sku_id, {'name': name, 'part': part}))) AS skus
    FROM (
        SELECT coalesce(s.sku_id, n.sku_id) AS sku_id,
               coalesce(s.sku_name, n.friendly_name) AS name,
               coalesce(s.sku_part_number, n.sku_part_number) AS part
        FROM (SELECT DISTINCT ON (sku_id) * FROM stg_graph__subscribed_skus WHERE sku_id IS NOT NULL ORDER BY sku_id) s
        FULL JOIN ref_sku_names n ON n.sku_id = s.sku_id
    )
),
-- This part's users' sign-ins and managers (both keyed by id; the part is the users').
part_ids AS (
    SELECT id FROM stg_graph__users WHERE m365_in_part(upn_key)
),
sign_ins AS (
    SELECT s.* FROM stg_graph__user_sign_ins s SEMI JOIN part_ids p ON p.id = s.id
),
managers AS (
    SELECT * FROM int_managers WHERE m365_in_part(upn_key)
),
licensed AS (
    SELECT u.*,
        list_sort(list_transform(u.assigned_sku_ids, lambda s: {
            'name': coalesce(map_extract_value(k.skus, lower(s)).name, lower(s)),
            'part': coalesce(map_extract_value(k.skus, lower(s)).part, lower(s))
        })) AS _licence_pairs
    FROM stg_graph__users u CROSS JOIN sku_map k
    WHERE m365_in_part(u.upn_key)
),
joined AS (
    SELECT
        u.id,
        u.user_principal_name,
        u.upn_key,
        u.display_name,
        u.given_name,
        u.surname,
        u.mail,
        u.account_enabled,
        u.user_type,
        u.created_at,
        CAST(u.created_at AS DATE)                AS created_date,
        u.department,
        u.job_title,
        u.office_location,
        u.company_name,
        u.employee_id,
        u.mobile_phone,
        u.business_phones,
        u.city,
        u.state,
        u.country,
        u.usage_location,
        u.on_premises_sync_enabled,
        u.last_password_change_at,
        u.assigned_sku_ids,
        u.on_premises_sam_account_name,
        u.on_premises_distinguished_name,
        u.on_premises_immutable_id,
        u.on_premises_domain_name,
        u.on_premises_last_sync_at,
        u.proxy_addresses,
        list_transform(list_filter(u.proxy_addresses, lambda a: starts_with(a, 'SMTP:')), lambda a: a[6:])[1]
                                                  AS primary_smtp_address,
        list_transform(list_filter(u.proxy_addresses, lambda a: starts_with(a, 'smtp:')), lambda a: a[6:])
                                                  AS email_aliases,
        u.other_mails,
        u.employee_type,
        u.employee_hire_at,
        u.external_user_state,
        u.creation_type,
        u.preferred_language,
        u.manager_id,
        mg.manager_user_principal_name,
        mg.manager_mail,
        mg.manager_display_name,
        mg.manager_distinguished_name,
        mg.manager_unresolved,
        si.last_sign_in_at,
        si.last_non_interactive_sign_in_at,
        si.last_successful_sign_in_at,
        CAST(greatest(si.last_sign_in_at, si.last_non_interactive_sign_in_at, si.last_successful_sign_in_at) AS DATE)
                                                  AS last_sign_in_date,
        list_transform(u._licence_pairs, lambda p: p.name) AS licenses,
        list_transform(u._licence_pairs, lambda p: p.part) AS license_part_numbers,
        a.exchange_last_activity_date,
        greatest(a.onedrive_last_activity_date, o.onedrive_report_last_activity_date)     AS onedrive_last_activity_date,
        greatest(a.sharepoint_last_activity_date, sp.sharepoint_report_last_activity_date) AS sharepoint_last_activity_date,
        greatest(a.teams_last_activity_date, t.teams_report_last_activity_date)           AS teams_last_activity_date,
        a.yammer_last_activity_date,
        a.skype_last_activity_date,
        ap.apps_last_activity_date,
        m.mailbox_last_activity_date,
        e.email_last_activity_date,
        a.latest_license_assign_date,
        a.has_exchange_license, a.has_onedrive_license, a.has_sharepoint_license, a.has_teams_license,
        a.report_assigned_products,
        a.report_refresh_date,
        act.office_last_activated_date,
        act.office_activations_windows,
        act.office_activations_mac,
        act.office_activations_mobile,
        act.office_activated_products,
        ap.apps_last_activation_date,
        ap.apps_used_windows, ap.apps_used_mac, ap.apps_used_mobile, ap.apps_used_web,
        ap.apps_used_count,
        m.mailbox_storage_used_bytes, m.mailbox_item_count, m.mailbox_has_archive,
        e.email_send_count, e.email_receive_count, e.email_read_count,
        o.onedrive_storage_used_bytes, o.onedrive_file_count,
        sp.sharepoint_viewed_or_edited_file_count, sp.sharepoint_visited_page_count,
        t.teams_chat_message_count, t.teams_private_chat_message_count, t.teams_call_count, t.teams_meeting_count,
        -- The latest "Last Activity Date" over all reports (NULL when none or concealed).
        greatest(a.exchange_last_activity_date, a.onedrive_last_activity_date,
                 a.sharepoint_last_activity_date, a.skype_last_activity_date,
                 a.yammer_last_activity_date, a.teams_last_activity_date,
                 ap.apps_last_activity_date, m.mailbox_last_activity_date,
                 e.email_last_activity_date, o.onedrive_report_last_activity_date,
                 sp.sharepoint_report_last_activity_date, t.teams_report_last_activity_date)
                                                  AS last_activity_date,
        u._row
    FROM licensed u
    LEFT JOIN active     a   ON a.upn_key = u.upn_key
    LEFT JOIN activations act ON act.upn_key = u.upn_key
    LEFT JOIN apps       ap  ON ap.upn_key = u.upn_key
    LEFT JOIN mailbox    m   ON m.upn_key = u.upn_key
    LEFT JOIN email      e   ON e.upn_key = u.upn_key
    LEFT JOIN onedrive   o   ON o.upn_key = u.upn_key
    LEFT JOIN sharepoint sp  ON sp.upn_key = u.upn_key
    LEFT JOIN teams      t   ON t.id = u.id
    LEFT JOIN managers   mg  ON mg.id = u.id
    LEFT JOIN sign_ins   si  ON si.id = u.id
),
seen AS (
    SELECT *,
        greatest(created_date, CAST(last_password_change_at AS DATE), last_sign_in_date,
                 last_activity_date, latest_license_assign_date) AS last_seen_date
    FROM joined
)
SELECT
    *,
    (getvariable('date_filter_days') = 0
        OR last_seen_date >= getvariable('run_date') - CAST(getvariable('date_filter_days') AS INTEGER))
        IS TRUE AS kept_by_date_filter
FROM seen
