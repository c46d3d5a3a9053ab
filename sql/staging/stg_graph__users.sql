-- Users of the run, from the typed columns landed beside each raw Graph record
-- (src/land/users_typed.rs: one column per `$select` property, parsed once while the pages
-- landed; for a run landed before typed landing `raw_users` computes the same columns from
-- `record`). This model only renames and defaults; it is a view, so it costs a column scan.
-- A value of an unexpected JSON type never failed the landing: it was converted when it
-- could be ("yes" -> true, 123 -> '123', an array -> its JSON text) and is NULL otherwise
-- (a number for a timestamp, a string for a list); the raw record keeps what Graph sent.
-- Multi-valued properties are lists in Graph's order (`proxyAddresses` keeps `SMTP:`/`smtp:`).
-- A user Graph listed more than once (pages are eventually consistent; the copies are
-- counted in the run manifest) is one user in `raw_users`: the copy from the latest page.
SELECT
    id                                          AS id,
    userPrincipalName                           AS user_principal_name,
    lower(userPrincipalName)                    AS upn_key,
    displayName                                 AS display_name,
    givenName                                   AS given_name,
    surname                                     AS surname,
    mail                                        AS mail,
    accountEnabled                              AS account_enabled,
    userType                                    AS user_type,
    createdDateTime                             AS created_at,
    department                                  AS department,
    jobTitle                                    AS job_title,
    officeLocation                              AS office_location,
    companyName                                 AS company_name,
    employeeId                                  AS employee_id,
    mobilePhone                                 AS mobile_phone,
    coalesce(businessPhones, []::VARCHAR[])     AS business_phones,
    city                                        AS city,
    state                                       AS state,
    country                                     AS country,
    usageLocation                               AS usage_location,
    onPremisesSyncEnabled                       AS on_premises_sync_enabled,
    lastPasswordChangeDateTime                  AS last_password_change_at,
    coalesce(assignedLicenses, []::VARCHAR[])   AS assigned_sku_ids,
    onPremisesSamAccountName                    AS on_premises_sam_account_name,
    onPremisesDistinguishedName                 AS on_premises_distinguished_name,
    onPremisesImmutableId                       AS on_premises_immutable_id,
    onPremisesDomainName                        AS on_premises_domain_name,
    onPremisesLastSyncDateTime                  AS on_premises_last_sync_at,
    coalesce(proxyAddresses, []::VARCHAR[])     AS proxy_addresses,
    coalesce(otherMails, []::VARCHAR[])         AS other_mails,
    employeeType                                AS employee_type,
    employeeHireDate                            AS employee_hire_at,
    externalUserState                           AS external_user_state,
    creationType                                AS creation_type,
    preferredLanguage                           AS preferred_language,
    -- The manager: `$expand=manager` on /users, `manager@delta` on /users/delta (the last
    -- entry not `@removed`; only removed entries = the manager was taken away). A delta record
    -- without `manager@delta` kept its manager: the snapshot carries it (users_snapshot.rs).
    -- Both are small JSON texts, NULL unless the walk asked for managers.
    coalesce(list_filter(json_transform("manager@delta", '[{"@odata.type": "VARCHAR", "id": "VARCHAR", "@removed": "JSON"}]'),
                         lambda m: m."@removed" IS NULL)[-1].id,
             CASE WHEN "manager@delta" IS NULL THEN json_transform(manager, '{"id": "VARCHAR"}').id END)
                                                AS manager_id,
    coalesce(list_filter(json_transform("manager@delta", '[{"@odata.type": "VARCHAR", "id": "VARCHAR", "@removed": "JSON"}]'),
                         lambda m: m."@removed" IS NULL)[-1]."@odata.type",
             CASE WHEN "manager@delta" IS NULL THEN json_transform(manager, '{"@odata.type": "VARCHAR"}')."@odata.type" END)
                                                AS manager_odata_type,
    _page,
    _row,
    _extracted_at
FROM raw_users
