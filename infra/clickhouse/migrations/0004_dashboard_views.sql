-- Views for the first dashboards and for analysts. Rollups are SummingMergeTree tables:
-- rows with the same key are folded only on merge, so every view reads them with sum().
-- Views name the request count `calls` (an alias may not shadow the rollup's `requests`
-- column inside another aggregate on 18.16). status_class: 2 = 2xx, 4 = 4xx (including the gateway's 401/403/429 refusals), 5 = 5xx.

-- Daily usage per customer: requests, billable units, refusals and server errors.
CREATE VIEW IF NOT EXISTS v_customer_daily AS
SELECT
    day,
    customer_id,
    sum(requests) AS calls,
    sum(units) AS billable_units,
    sumIf(requests, status_class = 4) AS client_errors,
    sumIf(requests, status_class = 5) AS server_errors,
    sum(request_bytes) AS request_bytes,
    sum(response_bytes) AS response_bytes
FROM usage_daily
GROUP BY day, customer_id;

-- Month-to-date usage per key (UTC calendar months), with the key's current name, tier and
-- state from the api_keys dimension: what the quota and billing jobs compare against.
CREATE VIEW IF NOT EXISTS v_key_monthly AS
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
)
ANY LEFT JOIN
(
    SELECT key_id, argMax(name, version) AS key_name, argMax(state, version) AS key_state
    FROM api_keys
    GROUP BY key_id
) USING key_id;

-- Hourly traffic and mean latency per route: the "what is slow, what is busy" panel.
CREATE VIEW IF NOT EXISTS v_route_hourly AS
SELECT
    hour,
    route,
    sum(requests) AS calls,
    sumIf(requests, status_class = 5) AS server_errors,
    sum(latency_ms_sum) / sum(requests) AS mean_latency_ms
FROM usage_hourly
GROUP BY hour, route;

-- Ingestion progress per Kafka partition: the last stored offset and how many rows came in.
CREATE VIEW IF NOT EXISTS v_ingest_progress AS
SELECT
    kafka_topic,
    kafka_partition,
    maxMerge(max_offset) AS last_offset,
    countMerge(rows) AS rows
FROM ingest_offsets
GROUP BY kafka_topic, kafka_partition;
