-- Sign-in activity of the run's users (`[pipeline] sign_in_activity`): the `users_sign_in`
-- stream, `/users?$select=id,userPrincipalName,signInActivity`, walked apart from the users
-- because Graph allows 5 such requests per 10 s. Empty when it was not read (off, no
-- AuditLog.Read.All, no Entra ID P1). Dates Graph never set come as 0001-01-01T00:00:00Z or
-- "": both are NULL here. A user listed twice keeps the copy from the latest page.
WITH parsed AS (
    SELECT
        json_transform(record, '{
            "id": "VARCHAR", "userPrincipalName": "VARCHAR",
            "signInActivity": {"lastSignInDateTime": "VARCHAR",
                               "lastNonInteractiveSignInDateTime": "VARCHAR",
                               "lastSuccessfulSignInDateTime": "VARCHAR"}
        }') AS u,
        _page,
        _row
    FROM raw_users_sign_in
)
SELECT
    u.id                                                            AS id,
    lower(u.userPrincipalName)                                      AS upn_key,
    m365_sign_in_ts(u.signInActivity.lastSignInDateTime)            AS last_sign_in_at,
    m365_sign_in_ts(u.signInActivity.lastNonInteractiveSignInDateTime) AS last_non_interactive_sign_in_at,
    m365_sign_in_ts(u.signInActivity.lastSuccessfulSignInDateTime)  AS last_successful_sign_in_at
FROM parsed
WHERE u.id IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY u.id ORDER BY _page DESC, _row DESC) = 1
