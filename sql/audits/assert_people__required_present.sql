-- No exported person lacks its key.
SELECT *
FROM out_people
WHERE "User.ExternalId" IS NULL
