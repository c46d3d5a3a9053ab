-- Licences per SKU: prepaid vs consumed (from subscribedSkus) and the users of this run that
-- hold each SKU (from assignedLicenses).
WITH assigned AS (
    SELECT lower(sku_id) AS sku_id, count(DISTINCT id) AS assigned_users
    FROM (SELECT id, unnest(assigned_sku_ids) AS sku_id FROM stg_graph__users)
    GROUP BY 1
)
SELECT
    s.sku_id,
    s.sku_part_number,
    s.sku_name,
    s.capability_status,
    s.prepaid_enabled,
    s.consumed_units,
    coalesce(a.assigned_users, 0) AS assigned_users
FROM stg_graph__subscribed_skus s
LEFT JOIN assigned a USING (sku_id)
ORDER BY s.sku_name
