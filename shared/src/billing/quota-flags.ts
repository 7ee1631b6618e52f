import { z } from "zod";
import type { Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";

/** What the quota worker records when it flags a key; gateways only need to know it is set. */
export const quotaFlagSchema = z.object({
  /** Month-to-date units when the key was flagged. */
  used: z.number().int().nonnegative(),
  quota: z.number().int().positive(),
  /** The end of the billing period (RFC 3339); the flag expires then. */
  period_end: z.string(),
});
export type QuotaFlag = z.infer<typeof quotaFlagSchema>;

/**
 * Flags a key as over quota until `flag.period_end` (the Redis key expires then) and tells
 * every gateway at once. A period end in the past clears the flag instead.
 */
export async function setQuotaFlag(redis: Redis, keys: RedisKeys, keyId: string, flag: QuotaFlag): Promise<void> {
  const end = Date.parse(flag.period_end);
  if (!Number.isFinite(end)) throw new Error(`period_end is not a date: ${flag.period_end}`);
  if (end <= Date.now()) return clearQuotaFlag(redis, keys, keyId);
  await redis
    .multi()
    .set(keys.quotaFlag(keyId), JSON.stringify(quotaFlagSchema.parse(flag)), "PXAT", end)
    .publish(keys.quotaFlagChannel, keyId)
    .exec();
}

/** Removes a key's quota flag (a tier upgrade, a new month) and tells every gateway at once. */
export async function clearQuotaFlag(redis: Redis, keys: RedisKeys, keyId: string): Promise<void> {
  await redis.multi().del(keys.quotaFlag(keyId)).publish(keys.quotaFlagChannel, keyId).exec();
}
