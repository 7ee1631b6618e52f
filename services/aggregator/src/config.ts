import { env, storesConfigSchema } from "@keymeter/shared/runtime";
import { z } from "zod";

export const aggregatorConfigSchema = storesConfigSchema.extend({
  AGGREGATOR_GROUP_ID: z.string().min(1).default("keymeter-aggregator"),
  /** Prefix of the Kafka topic names (`<prefix>usage.events`); empty in production. */
  KAFKA_TOPIC_PREFIX: z.string().default(""),
  /** Partitions of usage.events when this instance creates it. */
  KAFKA_EVENT_PARTITIONS: env.positiveInt().default(6),
  /** Batches handled at once (one per partition): overlaps ClickHouse inserts. */
  AGGREGATOR_CONCURRENCY: env.positiveInt().default(3),
  /**
   * The batches handled at the same time go to ClickHouse in one INSERT, sent once all of them
   * are read or this many rows are there (1: every batch alone): fewer, larger INSERTs cost
   * ClickHouse far less CPU per row (its views write new parts for every INSERT).
   */
  AGGREGATOR_INSERT_MAX_ROWS: env.positiveInt().default(100_000),
  /** Longest wait, in ms, for the other batches in hand to join an INSERT. */
  AGGREGATOR_INSERT_LINGER_MS: env.positiveInt().default(50),
  /** Bytes fetched per partition per request: a batch of ~400-byte events is this / 400. */
  AGGREGATOR_FETCH_BYTES_PER_PARTITION: env.positiveInt().default(4 * 1024 * 1024),
  /**
   * How long the group waits for a silent member before giving its partitions to others:
   * the pause in ingestion after a crash. Kafka accepts 6 s or more by default.
   */
  AGGREGATOR_SESSION_TIMEOUT_MS: env.positiveInt().default(10_000),
  /** How long a producer retry with the same (source, id) is recognised as a duplicate. */
  DEDUP_WINDOW_SECONDS: env.positiveInt().default(600),
  /**
   * Namespace of the key registry in Redis (its REDIS_KEY_PREFIX): events are attributed from
   * it, and quota counters and check queues live under it (must match the quota worker's).
   */
  REDIS_KEY_PREFIX: z.string().default(""),
  /** Redis key prefix of the dedup window. */
  DEDUP_KEY_PREFIX: z.string().default("dedup:"),
  METRICS_HOST: z.string().default("127.0.0.1"),
  /** Port of /metrics and /healthz; 0 picks a free one. */
  METRICS_PORT: env.port().default(9464),
  /** Bump month-to-date counters and enqueue quota checks after each stored batch. */
  QUOTA_CHECKS: env.flag().default(true),
  /** Percent of a key's quota from which each batch enqueues a check (the lowest webhook threshold). */
  QUOTA_CHECK_FROM_PERCENT: z.coerce.number().int().min(1).max(100).default(80),
  /** Path to a tiers JSON file (quotas); the shipped defaults when unset. Must match the quota worker's. */
  TIERS_FILE: z.string().min(1).optional(),
});

export type AggregatorConfig = z.infer<typeof aggregatorConfigSchema>;
