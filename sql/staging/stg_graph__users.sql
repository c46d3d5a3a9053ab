-- Users of the run, typed from the raw Graph JSON. `record` in the raw Parquet keeps every
-- field Graph sent; this model only renames and casts. Each record is parsed once
-- (json_transform). A value of an unexpected JSON type never fails the run: it is converted
-- when it can be ("yes" -> true, 123 -> '123', an array -> its JSON text) and NULL otherwise
-- (a number for a timestamp, a string for a list); the raw record keeps what Graph sent.
-- Multi-valued properties are lists in Graph's order (`proxyAddresses` keeps `SMTP:`/`smtp:`).
-- A user Graph listed more than once (pages are eventually consistent; the copies are
-- counted in the run manifest) is one user: the copy from the latest page is kept.
WITH parsed AS (
    SELECT
        json_transform(record, '{
            "id": "VARCHAR", "userPrincipalName": "VARCHAR", "displayName": "VARCHAR",
            "givenName": "VARCHAR", "surname": "VARCHAR", "mail": "VARCHAR",
            "accountEnabled": "BOOLEAN", "userType": "VARCHAR", "createdDateTime": "VARCHAR",
            "department": "VARCHAR", "jobTitle": "VARCHAR", "officeLocation": "VARCHAR",
            "companyName": "VARCHAR", "employeeId": "VARCHAR", "mobilePhone": "VARCHAR",
            "businessPhones": "VARCHAR[]", "city": "VARCHAR", "state": "VARCHAR",
            "country": "VARCHAR", "usageLocation": "VARCHAR", "onPremisesSyncEnabled": "BOOLEAN",
            "lastPasswordChangeDateTime": "VARCHAR", "assignedLicenses": "STRUCT(skuId VARCHAR)[]",
            "onPremisesSamAccountName": "VARCHAR", "onPremisesDistinguishedName": "VARCHAR",
            "onPremisesImmutableId": "VARCHAR", "onPremisesDomainName": "VARCHAR",
            "onPremisesLastSyncDateTime": "VARCHAR", "proxyAddresses": "VARCHAR[]",
            "otherMails": "VARCHAR[]", "employeeType": "VARCHAR", "employeeHireDate": "VARCHAR",
            "externalUserState": "VARCHAR", "creationType": "VARCHAR", "preferredLanguage": "VARCHAR",
            "manager": {"@odata.type": "VARCHAR", "id": "VARCHAR"},
            "manager@delta": [{"@odata.type": "VARCHAR", "id": "VARCHAR", "@removed": "JSON"}]
        }') AS u,
        _page,
        _row,
        _extracted_at
    FROM raw_users
)
SELECT
    u.id                                        AS id,
    u.userPrincipalName                         AS user_principal_name,
    lower(u.userPrincipalName)                  AS upn_key,
    u.displayName                               AS display_name,
    u.givenName                                 AS given_name,
    u.surname                                   AS surname,
    u.mail                                      AS mail,
    u.accountEnabled                            AS account_enabled,
    u.userType                                  AS user_type,
    m365_ts(u.createdDateTime)                  AS created_at,
    u.department                                AS department,
    u.jobTitle                                  AS job_title,
    u.officeLocation                            AS office_location,
    u.companyName                               AS company_name,
    u.employeeId                                AS employee_id,
    u.mobilePhone                               AS mobile_phone,
    coalesce(u.businessPhones, []::VARCHAR[])   AS business_phones,
    u.city                                      AS city,
    u.state                                     AS state,
    u.country                                   AS country,
    u.usageLocation                             AS usage_location,
    u.onPremisesSyncEnabled                     AS on_premises_sync_enabled,
    m365_ts(u.lastPasswordChangeDateTime)       AS last_password_change_at,
    coalesce(list_transform(u.assignedLicenses, lambda l: l.skuId), []::VARCHAR[]) AS assigned_sku_ids,
    u.onPremisesSamAccountName                  AS on_premises_sam_account_name,
    u.onPremisesDistinguishedName               AS on_premises_distinguished_name,
    u.onPremisesImmutableId                     AS on_premises_immutable_id,
    u.onPremisesDomainName                      AS on_premises_domain_name,
    m365_ts(u.onPremisesLastSyncDateTime)       AS on_premises_last_sync_at,
    coalesce(u.proxyAddresses, []::VARCHAR[])   AS proxy_addresses,
    coalesce(u.otherMails, []::VARCHAR[])       AS other_mails,
    u.employeeType                              AS employee_type,
    m365_ts(u.employeeHireDate)                 AS employee_hire_at,
    u.externalUserState                         AS external_user_state,
    u.creationType                              AS creation_type,
    u.preferredLanguage                         AS preferred_language,
    -- The manager: `$expand=manager` on /users, `manager@delta` on /users/delta (the last
    -- entry not `@removed`; only removed entries = the manager was taken away). A delta record
    -- without `manager@delta` kept its manager: the snapshot carries it (users_snapshot.rs).
    coalesce(list_filter(u."manager@delta", lambda m: m."@removed" IS NULL)[-1].id,
             CASE WHEN u."manager@delta" IS NULL THEN u.manager.id END)
                                                AS manager_id,
    coalesce(list_filter(u."manager@delta", lambda m: m."@removed" IS NULL)[-1]."@odata.type",
             CASE WHEN u."manager@delta" IS NULL THEN u.manager."@odata.type" END)
                                                AS manager_odata_type,
    _page,
    _row,
    _extracted_at
FROM parsed
QUALIFY u.id IS NULL
    OR row_number() OVER (PARTITION BY u.id ORDER BY _page DESC, _row DESC) = 1
