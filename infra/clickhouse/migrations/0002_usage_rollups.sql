-- Rollups per key, customer, tier, route and status class (2 = 2xx, 4 = 4xx, ...), by hour,
-- day and month (UTC). SummingMergeTree folds rows with the same key on merge: always read
-- them with sum(...) GROUP BY. Fired by the same INSERT as usage_events, so they never lag it.

CREATE TABLE IF NOT EXISTS usage_hourly
(
    hour DateTime('UTC'),
    key_id String,
    customer_id String,
    tier String,
    route String,
    status_class UInt8,
    requests UInt64,
    units UInt64,
    request_bytes UInt64,
    response_bytes UInt64,
    latency_ms_sum Float64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, customer_id, key_id, tier, route, status_class);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT
    toStartOfHour(event_time, 'UTC') AS hour,
    key_id,
    customer_id,
    tier,
    route,
    toUInt8(intDiv(status, 100)) AS status_class,
    count() AS requests,
    sum(units) AS units,
    sum(request_bytes) AS request_bytes,
    sum(response_bytes) AS response_bytes,
    sum(latency_ms) AS latency_ms_sum
FROM usage_events
GROUP BY hour, key_id, customer_id, tier, route, status_class;

CREATE TABLE IF NOT EXISTS usage_daily
(
    day Date,
    key_id String,
    customer_id String,
    tier String,
    route String,
    status_class UInt8,
    requests UInt64,
    units UInt64,
    request_bytes UInt64,
    response_bytes UInt64,
    latency_ms_sum Float64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (day, customer_id, key_id, tier, route, status_class);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT
    toDate(event_time, 'UTC') AS day,
    key_id,
    customer_id,
    tier,
    route,
    toUInt8(intDiv(status, 100)) AS status_class,
    count() AS requests,
    sum(units) AS units,
    sum(request_bytes) AS request_bytes,
    sum(response_bytes) AS response_bytes,
    sum(latency_ms) AS latency_ms_sum
FROM usage_events
GROUP BY day, key_id, customer_id, tier, route, status_class;

CREATE TABLE IF NOT EXISTS usage_monthly
(
    month Date,
    key_id String,
    customer_id String,
    tier String,
    route String,
    status_class UInt8,
    requests UInt64,
    units UInt64,
    request_bytes UInt64,
    response_bytes UInt64,
    latency_ms_sum Float64
)
ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(month)
ORDER BY (month, customer_id, key_id, tier, route, status_class);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_monthly_mv TO usage_monthly AS
SELECT
    toStartOfMonth(event_time, 'UTC') AS month,
    key_id,
    customer_id,
    tier,
    route,
    toUInt8(intDiv(status, 100)) AS status_class,
    count() AS requests,
    sum(units) AS units,
    sum(request_bytes) AS request_bytes,
    sum(response_bytes) AS response_bytes,
    sum(latency_ms) AS latency_ms_sum
FROM usage_events
GROUP BY month, key_id, customer_id, tier, route, status_class;
