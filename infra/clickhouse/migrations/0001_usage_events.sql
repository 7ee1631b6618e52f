-- Raw usage events, one row per accepted event, with the Kafka position it came from.
-- Runs on ClickHouse 18.16 and current releases: no DateTime64, Map, JSON or LowCardinality.
CREATE TABLE IF NOT EXISTS usage_events
(
    event_id String,
    source String,
    key_id String,
    customer_id String,
    tier String,
    event_time DateTime('UTC'),
    method String,
    route String,
    status UInt16,
    latency_ms Float32,
    request_bytes UInt64,
    response_bytes UInt64,
    units UInt64,
    kafka_topic String,
    kafka_partition UInt32,
    kafka_offset UInt64,
    ingested_at DateTime('UTC')
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(event_time)
ORDER BY (key_id, event_time, event_id);

-- Last ingested Kafka offset per topic and partition, written by the same INSERT as the raw
-- rows: the aggregator resumes after it, so a crash never stores a batch twice.
CREATE TABLE IF NOT EXISTS ingest_offsets
(
    kafka_topic String,
    kafka_partition UInt32,
    max_offset AggregateFunction(max, UInt64),
    rows AggregateFunction(count)
)
ENGINE = AggregatingMergeTree()
ORDER BY (kafka_topic, kafka_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_offsets_mv TO ingest_offsets AS
SELECT
    kafka_topic,
    kafka_partition,
    maxState(kafka_offset) AS max_offset,
    countState() AS rows
FROM usage_events
GROUP BY kafka_topic, kafka_partition;

-- A bloom filter on event ids speeds up support look-ups of single events. Data-skipping
-- indexes are experimental before 19.x, so only current releases get it.
-- @requires clickhouse >= 20.1
ALTER TABLE usage_events ADD INDEX IF NOT EXISTS idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 4;
