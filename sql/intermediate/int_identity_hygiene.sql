-- Identity hygiene of the run's directory: what an admin should fix in Entra ID, one row per
-- check, over every user of the run (exported or not). Always the same nine rows, whatever
-- the tenant's size; `examples` holds at most 10 short texts (addresses, UPNs, dates: never
-- a secret, there is none in int_people).
--
--   no_manager, manager_org_contact, manager_not_in_run_users
--       users without a manager, and managers that did not resolve to a user of the run
--       (int_managers says why). Only when the run read managers (`managers_read`); else
--       status `not_read` and NULL figures.
--   no_recent_sign_in
--       enabled accounts without a sign-in since `since`: the date filter's cutoff
--       (run_date - date_filter_days), or 90 days before the run date when the filter is off.
--       Never signed in counts. Only when the run read sign-in activity (`sign_ins_read`).
--   shared_address
--       addresses (lower-cased) that two or more different users carry in mail,
--       proxyAddresses (`SMTP:`/`smtp:` only, prefix stripped; SIP:, X500: … are not mail)
--       or otherMails. `addresses` counts them, `users` the people carrying one.
--   sync_cloud_only, sync_synced, sync_no_longer_synced
--       onPremisesSyncEnabled NULL, true, false.
--   stale_sync
--       synced users (true) whose last sync is older than 7 days before the run date.
--
-- `status`: finding (users > 0), ok, info (a count, not a problem) or not_read.
-- Not partitioned: it reads int_people once it is whole.
WITH
params AS (
    SELECT
        getvariable('run_date')                                      AS run_date,
        coalesce(getvariable('managers_read'), false)                AS managers_read,
        coalesce(getvariable('sign_ins_read'), false)                AS sign_ins_read,
        getvariable('run_date') - CASE WHEN getvariable('date_filter_days') > 0
                                       THEN CAST(getvariable('date_filter_days') AS INTEGER)
                                       ELSE 90 END                   AS sign_in_since,
        getvariable('run_date') - 7                                  AS sync_since
),
-- Read where used, not materialised: a scan of the int_people table costs less than a copy.
people AS NOT MATERIALIZED (
    SELECT id, user_principal_name AS upn, mail, account_enabled, on_premises_sync_enabled,
           on_premises_last_sync_at, proxy_addresses, other_mails, manager_id,
           manager_unresolved, last_sign_in_date
    FROM int_people
),
-- Every mail address a user carries, lower-cased; prefixes other than SMTP are not mail. A
-- user may carry one address twice (mail and proxyAddresses): `shared` needs no DISTINCT for
-- that, `shared_people` (the few shared addresses) takes each (address, user) once.
addresses AS (
    SELECT id, address FROM (
        SELECT id, lower(trim(mail)) AS address FROM people
        UNION ALL
        SELECT id, lower(trim(a[6:])) FROM (SELECT id, unnest(proxy_addresses) AS a FROM people)
        WHERE lower(a) LIKE 'smtp:%'
        UNION ALL
        SELECT id, lower(trim(a)) FROM (SELECT id, unnest(other_mails) AS a FROM people)
    )
    WHERE address IS NOT NULL AND address <> '' AND id IS NOT NULL
),
shared AS (
    -- min <> max: two different ids carry the address.
    SELECT address FROM addresses GROUP BY address HAVING min(id) <> max(id)
),
shared_people AS (
    SELECT DISTINCT a.address, a.id, p.upn
    FROM (SELECT * FROM addresses a SEMI JOIN shared s ON s.address = a.address) a
    JOIN people p ON p.id = a.id
),
shared_by_address AS (
    SELECT address, count(DISTINCT id) AS people, min(upn, 5) AS upns
    FROM shared_people GROUP BY address
),
shared_examples AS (
    -- The most shared first.
    SELECT min_by(line, {'p': -people, 'a': address}, 10) AS examples FROM (
        SELECT address, people,
               address || ': ' || array_to_string(upns, ', ')
               || CASE WHEN people > 5 THEN ' (+' || (people - 5) || ' more)' ELSE '' END AS line
        FROM shared_by_address
    )
),
-- Per-user flags, then one aggregate pass.
flags AS (
    SELECT p.*,
        p.manager_id IS NULL                                           AS no_manager,
        p.account_enabled IS TRUE
            AND (p.last_sign_in_date IS NULL OR p.last_sign_in_date < params.sign_in_since)
                                                                      AS no_recent_sign_in,
        p.on_premises_sync_enabled IS TRUE
            AND p.on_premises_last_sync_at < CAST(params.sync_since AS TIMESTAMP)
                                                                      AS stale_sync
    FROM people p CROSS JOIN params
),
counts AS (
    SELECT
        count(*)                                                         AS users,
        count(*) FILTER (WHERE no_manager)                               AS no_manager,
        count(*) FILTER (WHERE manager_id IS NOT NULL)                   AS with_manager,
        count(*) FILTER (WHERE manager_unresolved = 'org_contact')       AS manager_org_contact,
        count(*) FILTER (WHERE manager_unresolved = 'not_in_run_users')  AS manager_not_in_run_users,
        count(*) FILTER (WHERE account_enabled IS TRUE)                  AS enabled,
        count(*) FILTER (WHERE no_recent_sign_in)                        AS no_recent_sign_in,
        count(*) FILTER (WHERE on_premises_sync_enabled IS NULL)         AS cloud_only,
        count(*) FILTER (WHERE on_premises_sync_enabled IS TRUE)         AS synced,
        count(*) FILTER (WHERE on_premises_sync_enabled IS FALSE)        AS no_longer_synced,
        count(*) FILTER (WHERE stale_sync)                               AS stale_sync,
        -- Bounded examples: min(x, 10) keeps the 10 smallest, never a list of every user.
        min(upn, 10) FILTER (WHERE no_manager)                           AS ex_no_manager,
        min(upn || ': manager ' || manager_id, 10)
            FILTER (WHERE manager_unresolved = 'org_contact')            AS ex_org_contact,
        min(upn || ': manager ' || manager_id, 10)
            FILTER (WHERE manager_unresolved = 'not_in_run_users')       AS ex_not_in_run_users,
        -- Longest without a sign-in first (never signed in before any date).
        min_by(upn || CASE WHEN last_sign_in_date IS NULL THEN ': never signed in'
                           ELSE ': last sign-in ' || strftime(last_sign_in_date, '%Y-%m-%d') END,
               {'d': coalesce(last_sign_in_date, DATE '0001-01-01'), 'u': upn}, 10)
            FILTER (WHERE no_recent_sign_in)                             AS ex_no_recent_sign_in,
        min(upn || ': last sync ' || coalesce(strftime(on_premises_last_sync_at, '%Y-%m-%d'), 'unknown'), 10)
            FILTER (WHERE on_premises_sync_enabled IS FALSE)             AS ex_no_longer_synced,
        -- Oldest sync first.
        min_by(upn || ': last sync ' || strftime(on_premises_last_sync_at, '%Y-%m-%d'),
               {'t': on_premises_last_sync_at, 'u': upn}, 10)
            FILTER (WHERE stale_sync)                                    AS ex_stale_sync
    FROM flags
),
checks AS (
    SELECT 1 AS ord, 'no_manager' AS check_name, 'managers' AS needs,
           c.no_manager AS users, c.users AS of_users, NULL::BIGINT AS addresses,
           NULL::DATE AS since, c.ex_no_manager AS examples
    FROM counts c
    UNION ALL SELECT 2, 'manager_org_contact', 'managers', c.manager_org_contact, c.with_manager,
           NULL, NULL, c.ex_org_contact FROM counts c
    UNION ALL SELECT 3, 'manager_not_in_run_users', 'managers', c.manager_not_in_run_users,
           c.with_manager, NULL, NULL, c.ex_not_in_run_users FROM counts c
    UNION ALL SELECT 4, 'no_recent_sign_in', 'sign_ins', c.no_recent_sign_in, c.enabled,
           NULL, p.sign_in_since, c.ex_no_recent_sign_in FROM counts c CROSS JOIN params p
    UNION ALL SELECT 5, 'shared_address', NULL,
           (SELECT count(DISTINCT id) FROM shared_people), c.users,
           (SELECT count(*) FROM shared), NULL,
           (SELECT examples FROM shared_examples) FROM counts c
    UNION ALL SELECT 6, 'sync_cloud_only', 'info', c.cloud_only, c.users, NULL, NULL, NULL FROM counts c
    UNION ALL SELECT 7, 'sync_synced', 'info', c.synced, c.users, NULL, NULL, NULL FROM counts c
    UNION ALL SELECT 8, 'sync_no_longer_synced', NULL, c.no_longer_synced, c.users, NULL, NULL,
           c.ex_no_longer_synced FROM counts c
    UNION ALL SELECT 9, 'stale_sync', NULL, c.stale_sync, c.synced, NULL, p.sync_since,
           c.ex_stale_sync FROM counts c CROSS JOIN params p
),
judged AS (
    SELECT k.*,
        coalesce((k.needs = 'managers' AND NOT p.managers_read)
                 OR (k.needs = 'sign_ins' AND NOT p.sign_ins_read), false) AS not_read
    FROM checks k CROSS JOIN params p
)
SELECT
    CAST(ord AS INTEGER)                                                AS ord,
    check_name,
    CASE
        WHEN not_read THEN 'not_read'
        WHEN needs = 'info' THEN 'info'
        WHEN users > 0 THEN 'finding'
        ELSE 'ok'
    END                                                                 AS status,
    CAST(CASE WHEN NOT not_read THEN users END AS BIGINT)               AS users,
    CAST(CASE WHEN NOT not_read THEN of_users END AS BIGINT)            AS of_users,
    CAST(addresses AS BIGINT)                                           AS addresses,
    CASE WHEN NOT not_read THEN since END                               AS since,
    CASE WHEN NOT not_read THEN coalesce(examples, []::VARCHAR[]) ELSE []::VARCHAR[] END
                                                                        AS examples
FROM judged
ORDER BY ord
