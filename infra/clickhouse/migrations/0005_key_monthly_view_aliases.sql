-- Month-to-date usage per key (UTC calendar months), with the key's current name, tier and
-- state from the api_keys dimension: what the quota and billing jobs compare against.
-- First shipped in 0004 with unaliased joined subqueries, which ClickHouse 20.x and later
-- refuse (joined_subquery_requires_alias); with aliases it runs on 18.16 and current releases.
-- Dropped and created again so databases that applied 0004's first text get this definition.
DROP TABLE IF EXISTS v_key_monthly;

CREATE VIEW v_key_monthly AS
SELECT
    month,
    key_id,
    customer_id,
    tier,
    calls,
    billable_units,
    key_name,
    key_state
FROM
(
    SELECT month, key_id, customer_id, tier, sum(requests) AS calls, sum(units) AS billable_units
    FROM usage_monthly
    GROUP BY month, key_id, customer_id, tier
) AS monthly
ANY LEFT JOIN
(
    SELECT key_id, argMax(name, version) AS key_name, argMax(state, version) AS key_state
    FROM api_keys
    GROUP BY key_id
) AS keys_now USING key_id;
