import { z } from "zod";
import { mgetMany, type Redis } from "../stores/redis";
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
  if (end <= Date.now()) {
    await clearQuotaFlag(redis, keys, keyId);
    return;
  }
  await redis
    .multi()
    .set(keys.quotaFlag(keyId), JSON.stringify(quotaFlagSchema.parse(flag)), "PXAT", end)
    .publish(keys.quotaFlagChannel, keyId)
    .exec();
}

/**
 * Deletes the flag unless it records more usage than `observed` under the same quota and
 * period: a check that read ClickHouse earlier must not undo a flag a fresher check set.
 * KEYS: flag. ARGV: channel, key id, observed used, quota, period end ('' : unconditional).
 */
const CLEAR_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if ARGV[5] ~= '' then
  local ok, flag = pcall(cjson.decode, current)
  if ok and type(flag) == 'table' and tonumber(flag.used) ~= nil and tonumber(flag.used) > tonumber(ARGV[3])
    and tonumber(flag.quota) == tonumber(ARGV[4]) and flag.period_end == ARGV[5] then
    return -1
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
`;

/**
 * Removes a key's quota flag (a tier upgrade, a raised quota, a new month) and tells every
 * gateway at once. With `observed` (the usage the caller decided on), a flag that records
 * more usage under the same quota and period is kept. Returns whether a flag was removed.
 */
export async function clearQuotaFlag(
  redis: Redis,
  keys: RedisKeys,
  keyId: string,
  observed?: QuotaFlag,
): Promise<boolean> {
  const result = await redis.eval(
    CLEAR_SCRIPT,
    1,
    keys.quotaFlag(keyId),
    keys.quotaFlagChannel,
    keyId,
    observed?.used ?? 0,
    String(observed?.quota ?? ""),
    observed?.period_end ?? "",
  );
  return Number(result) === 1;
}

/** The flags of many keys (absent: not flagged), in round trips of 1,000. */
export async function readQuotaFlags(
  redis: Redis,
  keys: RedisKeys,
  keyIds: readonly string[],
): Promise<Map<string, QuotaFlag>> {
  const flags = new Map<string, QuotaFlag>();
  const raw = await mgetMany(
    redis,
    keyIds.map((id) => keys.quotaFlag(id)),
  );
  raw.forEach((value, i) => {
    const id = keyIds[i];
    if (value === null || id === undefined) return;
    let json: unknown;
    try {
      json = JSON.parse(value);
    } catch {
      json = undefined;
    }
    const parsed = quotaFlagSchema.safeParse(json);
    // An unreadable flag still blocks at the gateway: report it so the caller rewrites it.
    flags.set(id, parsed.success ? parsed.data : { used: 0, quota: 1, period_end: "" });
  });
  return flags;
}
