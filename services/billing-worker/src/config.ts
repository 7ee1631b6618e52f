import { stripeConfigSchema } from "@keymeter/shared/billing/provider";
import { env, redisClickHouseConfigSchema } from "@keymeter/shared/runtime";
import { z } from "zod";

const ms = (min: number) => z.coerce.number().int().min(min).max(86_400_000);

/** The billing worker's environment. */
export const billingWorkerConfigSchema = redisClickHouseConfigSchema.extend(stripeConfigSchema.shape).extend({
  /** Path to a tiers JSON file; the shipped defaults when unset. Must match the gateways'. */
  TIERS_FILE: z.string().min(1).optional(),
  /** Namespace for every Redis key and BullMQ queue; must match the admin API's. */
  REDIS_KEY_PREFIX: z.string().default(""),
  /** How often each billed tier is synced, unless its `stripe.sync_every_ms` says otherwise. */
  BILLING_SYNC_EVERY_MS: ms(1000).default(300_000),
  /** How often the month close looks for periods that ended. */
  BILLING_CLOSE_EVERY_MS: ms(1000).default(60_000),
  /** Wait this long after a period ends before closing it, so events in flight land in ClickHouse. */
  BILLING_CLOSE_SETTLE_MS: ms(0).default(120_000),
  /** Stripe finalizes the draft invoice this long after the period ends: a close after that is late. */
  BILLING_CLOSE_GRACE_MS: ms(60_000).default(3_600_000),
  /** How often the local reconciliation refreshes the differences gauge. */
  BILLING_RECONCILE_EVERY_MS: ms(1000).default(900_000),
  /** Meter events per call to the provider (progress is recorded after each batch). */
  BILLING_SYNC_BATCH: env.positiveInt().max(10_000).default(500),
  /** Create the Stripe customer and subscription of a customer with usage that has none yet. */
  BILLING_LINK_ON_DEMAND: env.flag().default(true),
  METRICS_HOST: z.string().default("127.0.0.1"),
  /** Port of /metrics and /healthz; 0 picks a free one. */
  METRICS_PORT: env.port().default(9466),
});

export type BillingWorkerConfig = z.infer<typeof billingWorkerConfigSchema>;
