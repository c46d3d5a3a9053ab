-- Licences per SKU: prepaid vs consumed (from subscribedSkus), the users of this run that
-- hold each SKU (from assignedLicenses), and the holders an admin could reclaim it from:
--   disabled_users: holders whose account is disabled;
--   inactive_users: enabled holders with no activity in any usage report within the report
--     period (int_report_period), leaving out accounts created or licensed within it.
--     NULL when report names are concealed: activity is then unknown, not absent.
WITH holders AS (
    SELECT lower(sku_id) AS sku_id, id, account_enabled, created_date,
           latest_license_assign_date, last_activity_date
    FROM (SELECT *, unnest(assigned_sku_ids) AS sku_id FROM int_people)
),
assigned AS (
    SELECT
        h.sku_id,
        count(DISTINCT h.id) AS assigned_users,
        count(DISTINCT h.id) FILTER (WHERE h.account_enabled IS FALSE) AS disabled_users,
        count(DISTINCT h.id) FILTER (
            WHERE h.account_enabled IS NOT FALSE
              AND coalesce(greatest(h.created_date, h.latest_license_assign_date), DATE '1900-01-01') < p.period_start
              AND coalesce(h.last_activity_date, DATE '1900-01-01') < p.period_start
        ) AS inactive_users
    FROM holders h CROSS JOIN int_report_period p
    GROUP BY h.sku_id
)
SELECT
    s.sku_id,
    s.sku_part_number,
    s.sku_name,
    s.capability_status,
    s.prepaid_enabled,
    s.consumed_units,
    coalesce(a.assigned_users, 0) AS assigned_users,
    CASE WHEN NOT getvariable('concealed') THEN coalesce(a.inactive_users, 0) END AS inactive_users,
    coalesce(a.disabled_users, 0) AS disabled_users
FROM stg_graph__subscribed_skus s
LEFT JOIN assigned a USING (sku_id)
ORDER BY s.sku_name
