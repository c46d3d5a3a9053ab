-- The mapped people of the run (from the mapping CSV, compiled into `int_people_mapped`)
-- with the reason a record cannot be exported, if any. Only date-filtered users get here.
SELECT
    *,
    CASE
        WHEN len(_missing_required) > 0
            THEN 'missing required attribute: ' || array_to_string(_missing_required, ', ')
        WHEN count(*) OVER (PARTITION BY "User.ExternalId") > 1
            THEN 'duplicate User.ExternalId'
    END AS _reject_reason
FROM int_people_mapped
