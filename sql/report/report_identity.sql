-- Identity hygiene: per check (int_identity_hygiene.sql says what each counts), the people
-- it found among those it looked at, what it means and what to do; `not_read` when the run
-- did not read what the check needs (and how to read it). `examples` are at most 10 lines.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    check_name,
    status,
    CASE check_name
        WHEN 'no_manager'               THEN 'Users without a manager'
        WHEN 'manager_org_contact'      THEN 'Manager is an organizational contact, not a user'
        WHEN 'manager_not_in_run_users' THEN 'Manager is not among this run''s users (deleted, or not returned)'
        WHEN 'no_recent_sign_in'        THEN 'Enabled accounts without a sign-in since ' || coalesce(strftime(since, '%Y-%m-%d'), 'the date filter''s cutoff')
        WHEN 'shared_address'           THEN 'Email addresses carried by more than one person (mail, proxyAddresses, otherMails)'
        WHEN 'sync_cloud_only'          THEN 'Cloud-only accounts'
        WHEN 'sync_synced'              THEN 'Synced from on-premises Active Directory'
        WHEN 'sync_no_longer_synced'    THEN 'Synced once, no longer synced'
        WHEN 'stale_sync'               THEN 'Synced accounts not updated by directory sync since ' || strftime(since, '%Y-%m-%d')
        ELSE check_name
    END                                                              AS title,
    users,
    of_users,
    CASE WHEN of_users > 0 THEN round(100.0 * users / of_users, 1) END AS pct,
    addresses,
    since,
    array_to_string(examples, chr(10))                               AS examples,
    CASE
        WHEN status = 'not_read' AND check_name LIKE '%manager%'
            THEN 'Not read by this run. To check managers, set [pipeline] manager = true in the connector file and run again: each user''s manager is read with the users.'
        WHEN status = 'not_read'
            THEN 'Not read by this run. To check sign-ins, grant the app the AuditLog.Read.All application permission (with admin consent); the tenant needs a Microsoft Entra ID P1 licence. With [pipeline] sign_in_activity = "auto" (the default) the next run reads them; "on" tries whatever the token says.'
        WHEN status = 'info'
            THEN 'Nothing to do: how the accounts are managed.'
        WHEN status = 'ok'
            THEN 'Nothing to do.'
        WHEN check_name = 'no_manager'
            THEN 'Set the manager where it is mastered: in Entra ID (Users > the user > Properties > Manager) for cloud accounts, in on-premises AD or the HR system for synced ones. Guests, rooms and service accounts usually have none and can stay so.'
        WHEN check_name = 'manager_org_contact'
            THEN 'Point the manager at the person''s user account instead of a mail contact (in on-premises AD for synced users); exports carry the contact''s id only.'
        WHEN check_name = 'manager_not_in_run_users'
            THEN 'The manager''s account is gone: set a current manager, or restore the manager from Deleted users within 30 days if it was deleted by mistake.'
        WHEN check_name = 'no_recent_sign_in'
            THEN 'Review these accounts: block sign-in for, or delete, those no longer needed and remove their licences (Microsoft 365 admin center > Users > Active users). Shared mailboxes and rooms never sign in: block their sign-in.'
        WHEN check_name = 'shared_address'
            THEN 'An address should belong to one person: remove it from everyone but its owner (aliases in the Exchange admin center > Recipients > Mailboxes > the mailbox > Email addresses; Other emails in Entra ID > the user > Properties), and use a shared mailbox or group for a team address. People sharing an address may be merged downstream.'
        WHEN check_name = 'sync_no_longer_synced'
            THEN 'Left over from on-premises AD (out of sync scope, or sync turned off): delete the accounts of people who left, and make the others deliberate cloud accounts.'
        WHEN check_name = 'stale_sync'
            THEN 'Directory sync has stopped updating these accounts: check Microsoft Entra Connect (Synchronization Service: export errors, last cycle) and whether the objects left the sync scope (moved OU, filtering).'
    END                                                              AS fix
FROM identity_hygiene JOIN r USING (run_id)
ORDER BY ord
