-- API key metadata mirrored from the Redis key registry, for joins with usage tables.
-- Never holds a secret or its hash. One row per change; ReplacingMergeTree keeps the highest
-- version per key on merge, so read with FINAL (or argMax(..., version) GROUP BY key_id).
-- `state` is the stored state (active/revoked); a key is expired when expires_at has passed.
CREATE TABLE IF NOT EXISTS api_keys
(
    key_id String,
    customer_id String,
    tier String,
    name String,
    env String,
    scope String,
    routes Array(String),
    ip_allowlist Array(String),
    state String,
    hint String,
    created_at DateTime('UTC'),
    updated_at DateTime('UTC'),
    rotated_at Nullable(DateTime('UTC')),
    revoked_at Nullable(DateTime('UTC')),
    expires_at Nullable(DateTime('UTC')),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_id;
