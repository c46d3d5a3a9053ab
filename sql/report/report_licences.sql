-- Licences per SKU: prepaid vs consumed, the users of this run holding it, and the holders
-- it could be reclaimed from (inactive in the report period; disabled accounts).
-- `inactive_users` is NULL when report names are concealed (activity unknown).
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    sku_id,
    sku_name,
    sku_part_number,
    capability_status,
    prepaid_enabled                                AS prepaid,
    consumed_units                                 AS consumed,
    prepaid_enabled - consumed_units               AS available,
    CASE WHEN prepaid_enabled > 0 THEN round(100.0 * consumed_units / prepaid_enabled, 1) END AS used_pct,
    assigned_users,
    inactive_users,
    disabled_users
FROM license_counts JOIN r USING (run_id)
ORDER BY consumed_units DESC, sku_name, sku_id
