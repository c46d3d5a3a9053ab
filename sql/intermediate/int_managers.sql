-- Every user's manager, resolved against the same run's users by id: no request per user.
-- `manager_unresolved` says why a manager named by Graph has no attributes here:
--   org_contact       the manager is an organizational contact, not a user;
--   not_in_run_users  no user of this run has that id (deleted, or not returned).
-- Such a person keeps `manager_id` and is never dropped; the run counts them (warnings.rs).
-- Built once over the whole tenant, before int_people's parts, which join it by id.
SELECT
    u.id,
    u.upn_key,
    u.manager_id,
    m.user_principal_name             AS manager_user_principal_name,
    m.mail                            AS manager_mail,
    m.display_name                    AS manager_display_name,
    m.on_premises_distinguished_name  AS manager_distinguished_name,
    CASE
        WHEN m.id IS NOT NULL THEN NULL
        WHEN u.manager_odata_type ILIKE '%orgContact' THEN 'org_contact'
        ELSE 'not_in_run_users'
    END                               AS manager_unresolved
FROM stg_graph__users u
LEFT JOIN stg_graph__users m ON m.id = u.manager_id
WHERE u.manager_id IS NOT NULL AND u.id IS NOT NULL
