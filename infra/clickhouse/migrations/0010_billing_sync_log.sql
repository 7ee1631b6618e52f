-- Audit of the billing worker: one row per meter event it sent to Stripe (a sync or a month
-- close) with Stripe's answer, and one row per (customer, tier) when a period is closed.
-- Read it in SQL, e.g. the last total Stripe accepted per customer and tier in a period:
--   SELECT customer_id, tier, argMax(value, at) FROM billing_sync_log
--   WHERE period_id = '2026-11' AND outcome IN ('accepted', 'duplicate') GROUP BY customer_id, tier
-- kind: sync | close | closed. outcome: accepted | duplicate | rejected | failed | dry_run | closed.
CREATE TABLE IF NOT EXISTS billing_sync_log
(
    at DateTime('UTC'),
    run_id String,
    kind String,
    customer_id String,
    tier String,
    period_id String,
    period_start DateTime('UTC'),
    period_end DateTime('UTC'),
    stripe_customer_id String,
    meter_event_name String,
    value UInt64,
    identifier String,
    event_time DateTime('UTC'),
    outcome String,
    error String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(period_start)
ORDER BY (customer_id, tier, period_id, at);
