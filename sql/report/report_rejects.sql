-- People left out for a reason other than the date filter, per reason, with what to do.
-- Run with `SET VARIABLE run_id = '<run id>';` first, or alone for the newest transformed run.
WITH r AS (
    SELECT coalesce(getvariable('run_id'),
                    (SELECT max(run_id) FROM runs WHERE transform_status = 'succeeded')) AS run_id
)
SELECT
    reason,
    count(*) AS people,
    CASE
        WHEN reason LIKE 'missing required attribute%'
            THEN 'fill the attribute in Entra ID, or make it optional in the mapping file ([pipeline] mappings)'
        WHEN reason LIKE 'duplicate%'
            THEN 'two directory objects map to the same key: check the mapping of User.ExternalId'
        ELSE 'see the rejects table: m365-connector sql -c FILE "SELECT * FROM rejects"'
    END AS fix
FROM rejects JOIN r USING (run_id)
GROUP BY reason
ORDER BY people DESC, reason
