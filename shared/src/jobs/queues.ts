import type { Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";

/** The BullMQ queues, one per kind of work so a slow webhook endpoint never delays a check. */
export const QUEUE_NAMES = {
  /** One key's month-to-date usage against its quota: flag or unflag, threshold webhooks. */
  quotaChecks: "quota-checks",
  /** The full sweep (a job scheduler adds one every QUOTA_SWEEP_INTERVAL_MS). */
  quotaSweeps: "quota-sweeps",
  /** Signed webhook deliveries, retried with exponential back-off. */
  quotaWebhooks: "quota-webhooks",
  /** One tier's month-to-date totals to Stripe (a job scheduler per tier, each on its own cadence). */
  billingSync: "billing-sync",
  /** Month close of every customer whose period ended (a job scheduler every minute). */
  billingClose: "billing-close",
  /** Local reconciliation (ClickHouse against the worker's records) for the Prometheus gauge. */
  billingReconcile: "billing-reconcile",
} as const;

export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

/** Options every queue and worker gets: the connection and the key prefix (tests get a namespace each). */
export interface QueueConnection {
  /** A connection made with `createRedis(url, { forBullMQ: true })`. */
  connection: Redis;
  prefix: string;
}

export function queueConnection(connection: Redis, keys: RedisKeys): QueueConnection {
  return { connection, prefix: keys.bullPrefix };
}

/** The job scheduler id of the sweep (upsertJobScheduler is idempotent across instances). */
export const SWEEP_SCHEDULER_ID = "quota-sweep";

/** The job scheduler id of one tier's sync. */
export function billingSyncSchedulerId(tier: string): string {
  return `billing-sync:${tier}`;
}

export const BILLING_CLOSE_SCHEDULER_ID = "billing-close";
export const BILLING_RECONCILE_SCHEDULER_ID = "billing-reconcile";
