import { env, redisClickHouseConfigSchema } from "@keymeter/shared/runtime";
import { z } from "zod";

const percentList = () =>
  z
    .string()
    .transform((value) =>
      value
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== "")
        .map(Number),
    )
    .pipe(
      z
        .array(z.number().int("expected whole percentages like 80,100").min(1).max(1000))
        .min(1, "expected at least one percentage"),
    );

/** The quota worker's environment. */
export const quotaWorkerConfigSchema = redisClickHouseConfigSchema.extend({
  /** Path to a tiers JSON file; the shipped defaults when unset. Must match the gateways'. */
  TIERS_FILE: z.string().min(1).optional(),
  /** Namespace for every Redis key, channel and BullMQ queue; must match the gateways'. */
  REDIS_KEY_PREFIX: z.string().default(""),
  /** Check and webhook jobs handled at once by this instance (the sweep runs one at a time). */
  QUOTA_WORKER_CONCURRENCY: env.positiveInt().default(8),
  /** How often the full sweep runs (a BullMQ job scheduler shared by all instances). */
  QUOTA_SWEEP_INTERVAL_MS: z.coerce.number().int().min(1000).default(60_000),
  /** Percentages of the quota at which the customer's webhooks are called, once per key and period. */
  QUOTA_WEBHOOK_THRESHOLDS: percentList().default([80, 100]),
  /** Delivery attempts per webhook (exponential back-off from QUOTA_WEBHOOK_BACKOFF_MS). */
  QUOTA_WEBHOOK_ATTEMPTS: env.positiveInt().default(10),
  QUOTA_WEBHOOK_BACKOFF_MS: env.positiveInt().default(2_000),
  /** How long one delivery may take before it counts as failed. */
  QUOTA_WEBHOOK_TIMEOUT_MS: env.positiveInt().default(10_000),
  METRICS_HOST: z.string().default("127.0.0.1"),
  /** Port of /metrics and /healthz; 0 picks a free one. */
  METRICS_PORT: env.port().default(9465),
});

export type QuotaWorkerConfig = z.infer<typeof quotaWorkerConfigSchema>;
