-- Numbered 0006: 0005 is taken by another branch's migration (v_key_monthly with aliased joins).
-- Key aliases (a Kong consumer id, another gateway's key id) mirrored with the key.
ALTER TABLE api_keys ADD COLUMN aliases Array(String);

-- Usage of keys the registry did not know when the aggregator stored it: the subject as sent
-- (a key id or an alias nobody registered), with no customer or tier, so nobody is billed for
-- it. Kept and reported here, never dropped: register the key or alias, then re-attribute.
CREATE VIEW IF NOT EXISTS v_unknown_keys AS
SELECT
    key_id AS subject,
    min(day) AS first_day,
    max(day) AS last_day,
    sum(requests) AS calls,
    sum(units) AS units
FROM usage_daily
WHERE customer_id = ''
GROUP BY key_id;
