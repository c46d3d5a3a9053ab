-- Every exported person has a distinct User.ExternalId.
SELECT "User.ExternalId", count(*) AS copies
FROM out_people
GROUP BY 1
HAVING count(*) > 1
