-- Records left out for a reason other than the date filter, with the reason.
SELECT
    "User.ExternalId"                                   AS external_id,
    i.user_principal_name,
    _reject_reason                                      AS reason,
    c._source_row                                       AS source_row
FROM out_people_checked c
LEFT JOIN int_people i ON i._row = c._source_row
WHERE _reject_reason IS NOT NULL
ORDER BY external_id, source_row
