-- Parsing helpers for report CSV cells (text as Microsoft serves it). Idempotent.
-- Empty strings are "no value"; unparsable values become NULL instead of failing the run.
CREATE OR REPLACE MACRO m365_text(x) AS nullif(trim(x), '');
CREATE OR REPLACE MACRO m365_date(x) AS TRY_CAST(nullif(trim(x), '') AS DATE);
CREATE OR REPLACE MACRO m365_int(x) AS TRY_CAST(nullif(trim(x), '') AS BIGINT);
CREATE OR REPLACE MACRO m365_bool(x) AS
    CASE lower(trim(x))
        WHEN 'true' THEN true WHEN 'yes' THEN true
        WHEN 'false' THEN false WHEN 'no' THEN false
    END;
-- A Graph ISO 8601 UTC timestamp (e.g. 2014-01-01T00:00:00Z).
CREATE OR REPLACE MACRO m365_ts(x) AS TRY_CAST(nullif(trim(x), '') AS TIMESTAMP);
-- Concealed report names: 32-hex hashes or <PII:...> tokens (see src/concealment.rs).
-- The regular expression runs only on 32-byte names (CASE evaluates lazily): run on every
-- row of eight million-row reports it was a third of the transform's time.
CREATE OR REPLACE MACRO m365_is_concealed(x) AS
    CASE WHEN strlen(trim(x)) = 32 THEN regexp_full_match(trim(x), '[0-9A-Fa-f]{32}') OR starts_with(trim(x), '<PII:')
         ELSE starts_with(trim(x), '<PII:') END;
-- The key a report row joins users by: the lower-cased name, NULL when it is concealed.
CREATE OR REPLACE MACRO m365_user_key(x) AS
    CASE WHEN NOT m365_is_concealed(x) THEN lower(m365_text(x)) END;
-- Whether a user key belongs to the part of int_people being built (see src/transform/runner.rs):
-- parts split users by a hash of the lower-cased UPN; with one part, every key belongs.
CREATE OR REPLACE MACRO m365_in_part(k) AS
    getvariable('parts') = 1 OR hash(k) % getvariable('parts') = getvariable('part');
-- A signInActivity timestamp: Graph writes dates it never set as 0001-01-01T00:00:00Z or "".
CREATE OR REPLACE MACRO m365_sign_in_ts(x) AS
    CASE WHEN m365_ts(x) > TIMESTAMP '1900-01-01' THEN m365_ts(x) END;
