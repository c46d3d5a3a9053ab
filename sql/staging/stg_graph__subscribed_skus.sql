-- Subscribed licences (SKUs) with prepaid and consumed units, and a friendly name from
-- mappings/sku_names.csv (Microsoft's "product names and service plan identifiers" layout);
-- an unknown SKU falls back to its part number.
SELECT
    lower(json_extract_string(s.record, '$.skuId'))                AS sku_id,
    json_extract_string(s.record, '$.skuPartNumber')               AS sku_part_number,
    coalesce(n.friendly_name, json_extract_string(s.record, '$.skuPartNumber')) AS sku_name,
    n.friendly_name IS NOT NULL                                    AS has_friendly_name,
    json_extract_string(s.record, '$.capabilityStatus')            AS capability_status,
    json_extract_string(s.record, '$.appliesTo')                   AS applies_to,
    TRY_CAST(json_extract_string(s.record, '$.prepaidUnits.enabled') AS BIGINT)   AS prepaid_enabled,
    TRY_CAST(json_extract_string(s.record, '$.prepaidUnits.suspended') AS BIGINT) AS prepaid_suspended,
    TRY_CAST(json_extract_string(s.record, '$.prepaidUnits.warning') AS BIGINT)   AS prepaid_warning,
    TRY_CAST(json_extract_string(s.record, '$.prepaidUnits.lockedOut') AS BIGINT) AS prepaid_locked_out,
    TRY_CAST(json_extract_string(s.record, '$.consumedUnits') AS BIGINT)          AS consumed_units,
    s._extracted_at
FROM raw_subscribed_skus AS s
LEFT JOIN ref_sku_names AS n
       ON n.sku_id = lower(json_extract_string(s.record, '$.skuId'))
