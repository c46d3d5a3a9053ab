-- The Neurons-ready people of the run: mapped, date-filtered, without rejects.
SELECT * EXCLUDE (_missing_required, _reject_reason, _source_row)
FROM out_people_checked
WHERE _reject_reason IS NULL
ORDER BY "User.ExternalId"
