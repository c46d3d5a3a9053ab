-- The tenant (one row): name, default domain and where it lives.
SELECT
    json_extract_string(record, '$.id')                 AS tenant_id,
    json_extract_string(record, '$.displayName')        AS display_name,
    json_extract_string(record, '$.countryLetterCode')  AS country_letter_code,
    json_extract_string(record, '$.tenantType')         AS tenant_type,
    m365_ts(json_extract_string(record, '$.createdDateTime')) AS created_at,
    (SELECT list(json_extract_string(d, '$.name'))
       FROM (SELECT unnest(json_extract(record, '$.verifiedDomains[*]')) AS d))   AS verified_domains,
    (SELECT first(json_extract_string(d, '$.name'))
       FROM (SELECT unnest(json_extract(record, '$.verifiedDomains[*]')) AS d)
      WHERE json_extract_string(d, '$.isDefault') = 'true')                      AS default_domain,
    _extracted_at
FROM raw_organization
