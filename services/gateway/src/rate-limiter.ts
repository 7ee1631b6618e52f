import { createHash } from "node:crypto";
import type { Redis, RedisKeys, Tier } from "@keymeter/shared";

/**
 * GCRA (a token bucket expressed as one timestamp per key) in one Lua call: one round trip,
 * atomic, and exact across any number of gateway instances because Redis' clock is the only
 * clock. KEYS[1]: the bucket; ARGV: emission interval (µs), burst (requests), cost.
 * Returns allowed (0/1), remaining, retry after (µs), time until the bucket is full (µs).
 */
const GCRA_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
local allow_at = new_tat - window
if allow_at > now then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((window - (new_tat - now)) / interval), 0, new_tat - now}
`;
const GCRA_SHA = createHash("sha1").update(GCRA_SCRIPT).digest("hex");

export interface RateLimitResult {
  allowed: boolean;
  /** Requests per second: the `RateLimit-Limit` header. */
  limit: number;
  remaining: number;
  /** Milliseconds until a request would be allowed (0 when allowed). */
  retryAfterMs: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
}

/** The per-key rate limit of each tier, shared by every gateway through Redis. */
export class RateLimiter {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  async take(keyId: string, tier: Tier, cost = 1): Promise<RateLimitResult> {
    const intervalUs = Math.max(1, Math.round(1_000_000 / tier.rate_limit_rps));
    const burst = tier.burst ?? Math.max(1, Math.ceil(tier.rate_limit_rps));
    const bucket = this.keys.rateLimit(keyId);
    let reply: unknown;
    try {
      reply = await this.redis.evalsha(GCRA_SHA, 1, bucket, intervalUs, burst, cost);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      reply = await this.redis.eval(GCRA_SCRIPT, 1, bucket, intervalUs, burst, cost);
    }
    if (!Array.isArray(reply) || reply.length !== 4) throw new Error("unexpected rate limiter reply");
    const [allowed, remaining, retryAfterUs, resetUs] = reply.map(Number);
    return {
      allowed: allowed === 1,
      limit: tier.rate_limit_rps,
      remaining: Math.max(0, remaining ?? 0),
      retryAfterMs: Math.ceil((retryAfterUs ?? 0) / 1000),
      resetMs: Math.ceil((resetUs ?? 0) / 1000),
    };
  }
}
