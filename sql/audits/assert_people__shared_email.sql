-- Emails shared by several exported people (shared mailboxes, copied addresses): the
-- platform may merge such people. Reported as a warning, not a failure.
SELECT lower("User.Email") AS email, count(*) AS people, list("User.ExternalId" ORDER BY "User.ExternalId") AS external_ids
FROM out_people
WHERE "User.Email" IS NOT NULL
GROUP BY 1
HAVING count(*) > 1
ORDER BY 1
