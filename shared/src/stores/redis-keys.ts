/**
 * The Redis key layout, in one place. Every key and channel name goes through here, with a
 * prefix that gives tests (and side-by-side deployments) their own namespace.
 *
 * | key                                | type   | written by          | content                                   |
 * | ---------------------------------- | ------ | ------------------- | ----------------------------------------- |
 * | `apikey:record:<key_id>`           | string | key registry        | the key record, JSON (hashes, never secret) |
 * | `apikey:hash:<sha256 hex>`         | string | key registry        | the key id; a rotated-out hash expires at the end of its grace period |
 * | `apikey:alias:<alias>`             | string | key registry        | the key id an alias (Kong consumer id, another gateway's key id) stands for; unique |
 * | `apikey:ids`                       | zset   | key registry        | key ids scored by creation time (ms)      |
 * | `apikey:customer:<customer_id>`    | zset   | key registry        | one customer's key ids, by creation time  |
 * | `ratelimit:<key_id>`               | string | gateway limiter     | GCRA theoretical arrival time (µs)        |
 * | `quota:flag:<key_id>`              | string | quota worker        | why the key is over quota, JSON; expires at period end |
 * | `quota:usage:<period>:<key_id>`    | string | aggregator hook, sweep | month-to-date units (INCRBY; the sweep raises it to ClickHouse's figure); expires a day after the period |
 * | `quota:override:<key_id>`          | string | admin API, CLI      | per-key monthly quota replacing the tier's, JSON |
 * | `quota:webhook:<period>:<key_id>:<pct>` | string | quota worker   | deliveries of this threshold were enqueued; expires 35 days after the period |
 * | `quota:webhook:claim:<delivery_id>` | string | quota worker       | an attempt is sending it; kept if the worker dies mid-send (in doubt: not resent); expires after 35 days |
 * | `quota:webhook:sent:<delivery_id>` | string | quota worker        | this delivery got a 2xx (no resend after a crash); expires after 35 days |
 * | `customer:record:<customer_id>`    | string | customer registry   | the customer record, JSON (webhook signing secrets included) |
 * | `customer:ids`                     | zset   | customer registry   | customer ids scored by creation time (ms) |
 * | `bull:<queue>:*`                   | BullMQ | quota worker, hook  | queues `quota-checks`, `quota-sweeps`, `quota-webhooks` (see shared/src/jobs) |
 * | `billing:sent:<tier>:<period>`     | hash   | billing worker      | customer id -> month-to-date total Stripe accepted (a resumed run skips equal totals); expires 40 days after the period |
 * | `billing:close:<period>:<customer_id>` | string | billing worker  | the frozen final totals per tier a month close sends, JSON (a retried close sends the same events) |
 * | `billing:closed:<period>:<customer_id>` | string | billing worker | the period is closed: totals per tier, when, JSON; later usage is only reported |
 *
 * Channels: `apikey:changed` (message: JSON `{ keyId, hashes }`, after any change to a key),
 * `quota:flag:changed` (message: the key id, after a flag is set or cleared),
 * `quota:override:changed` (message: the key id) and `customer:changed` (message: the
 * customer id).
 */
export interface RedisKeys {
  keyRecord(keyId: string): string;
  keyByHash(hash: string): string;
  keyAlias(alias: string): string;
  keyIds: string;
  customerKeyIds(customerId: string): string;
  rateLimit(keyId: string): string;
  quotaFlag(keyId: string): string;
  keyChangedChannel: string;
  quotaFlagChannel: string;
  usageCounter(periodId: string, keyId: string): string;
  quotaOverride(keyId: string): string;
  quotaOverrideChannel: string;
  webhookThreshold(periodId: string, keyId: string, percent: number): string;
  webhookSent(deliveryId: string): string;
  webhookClaim(deliveryId: string): string;
  customerRecord(customerId: string): string;
  customerIds: string;
  customerChangedChannel: string;
  billingSent(tier: string, periodId: string): string;
  billingCloseSnapshot(periodId: string, customerId: string): string;
  billingClosed(periodId: string, customerId: string): string;
  /** BullMQ's `prefix` option: its keys share the namespace. */
  bullPrefix: string;
}

export function redisKeys(prefix = ""): RedisKeys {
  return {
    keyRecord: (keyId) => `${prefix}apikey:record:${keyId}`,
    keyByHash: (hash) => `${prefix}apikey:hash:${hash}`,
    keyAlias: (alias) => `${prefix}apikey:alias:${alias}`,
    keyIds: `${prefix}apikey:ids`,
    customerKeyIds: (customerId) => `${prefix}apikey:customer:${customerId}`,
    rateLimit: (keyId) => `${prefix}ratelimit:${keyId}`,
    quotaFlag: (keyId) => `${prefix}quota:flag:${keyId}`,
    keyChangedChannel: `${prefix}apikey:changed`,
    quotaFlagChannel: `${prefix}quota:flag:changed`,
    usageCounter: (periodId, keyId) => `${prefix}quota:usage:${periodId}:${keyId}`,
    quotaOverride: (keyId) => `${prefix}quota:override:${keyId}`,
    quotaOverrideChannel: `${prefix}quota:override:changed`,
    webhookThreshold: (periodId, keyId, percent) => `${prefix}quota:webhook:${periodId}:${keyId}:${percent}`,
    webhookSent: (deliveryId) => `${prefix}quota:webhook:sent:${deliveryId}`,
    webhookClaim: (deliveryId) => `${prefix}quota:webhook:claim:${deliveryId}`,
    customerRecord: (customerId) => `${prefix}customer:record:${customerId}`,
    customerIds: `${prefix}customer:ids`,
    customerChangedChannel: `${prefix}customer:changed`,
    billingSent: (tier, periodId) => `${prefix}billing:sent:${tier}:${periodId}`,
    billingCloseSnapshot: (periodId, customerId) => `${prefix}billing:close:${periodId}:${customerId}`,
    billingClosed: (periodId, customerId) => `${prefix}billing:closed:${periodId}:${customerId}`,
    bullPrefix: `${prefix}bull`,
  };
}
