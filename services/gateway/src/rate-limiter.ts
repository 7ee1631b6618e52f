import { createHash } from "node:crypto";
import type { Tier } from "@keymeter/shared/billing";
import type { Logger } from "@keymeter/shared/runtime";
import type { Redis, RedisKeys } from "@keymeter/shared/stores";

/**
 * GCRA (a token bucket expressed as one timestamp per key) in one Lua call: atomic, and
 * exact across any number of gateway instances because Redis' clock is the only clock.
 * Takes up to ARGV[3] tokens at once (a lease), granting fewer when fewer are there.
 * KEYS[1]: the bucket; ARGV: emission interval (µs), burst (tokens), tokens wanted.
 * Returns granted, tokens left in the bucket, retry after (µs, when none granted), time
 * until the bucket is full (µs).
 */
const GCRA_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local available = math.floor((now + window - tat) / interval)
if available < 1 then
  return {0, 0, tat + interval - window - now, tat - now}
end
local granted = math.min(available, tonumber(ARGV[3]))
local new_tat = tat + interval * granted
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, available - granted, 0, new_tat - now}
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

export interface RateLimiterOptions {
  /**
   * Local token leases: an instance takes up to `rate × leaseMs` tokens per Redis call and
   * spends them without a round trip, refilling in the background at half. 0 turns leases
   * off (one round trip per request). Tiers slower than one token per lease always go to
   * Redis, so low limits stay exact.
   */
  leaseMs?: number;
  /** Largest lease, tokens. */
  maxLease?: number;
  logger?: Logger;
  now?: () => number;
}

interface Lease {
  tokens: number;
  /** Tokens spent since the last refill began: what a renewal asks for (twice that). */
  spent: number;
  /** Epoch ms after which unspent tokens are dropped, so a stale lease cannot become a burst. */
  expiresAt: number;
  /** Tokens left in the shared bucket when the lease was taken (for RateLimit-Remaining). */
  bucketRemaining: number;
  resetAt: number;
  refill: Promise<RateLimitResult> | undefined;
}

/**
 * The per-key rate limit of each tier, shared by every gateway through Redis. With leases
 * on, a cache-hit request costs no round trip; the price is that tokens leased by one
 * instance and not spent within the lease are lost to the others (at most one lease per
 * instance: the limit errs towards admitting fewer, never more).
 */
export class RateLimiter {
  private readonly leaseMs: number;
  private readonly maxLease: number;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;
  private readonly leases = new Map<string, Lease>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    options: RateLimiterOptions = {},
  ) {
    this.leaseMs = options.leaseMs ?? 0;
    this.maxLease = options.maxLease ?? 1000;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /** Spends one token of `keyId`'s bucket, locally when a lease has one, else in Redis. */
  async take(keyId: string, tier: Tier): Promise<RateLimitResult> {
    const leaseSize = this.leaseSize(tier);
    if (leaseSize <= 1) return this.takeFromRedis(keyId, tier, 1);
    let lease = this.leases.get(keyId);
    if (!lease) {
      if (this.leases.size >= 10_000) this.prune();
      lease = { tokens: 0, spent: 0, expiresAt: 0, bucketRemaining: 0, resetAt: 0, refill: undefined };
      this.leases.set(keyId, lease);
    }
    // Concurrent requests share one refill instead of each leasing a batch.
    for (let attempt = 0; attempt < 2; attempt++) {
      const now = this.now();
      if (lease.tokens > 0 && lease.expiresAt > now) {
        lease.tokens--;
        lease.spent++;
        // Refilled in the background at half the tokens, or, for a key spending fewer than that
        // per lease, renewed at half the lease's life with twice what it spent: otherwise its
        // lease lapses and one request per lease waits for Redis.
        const wanted = lease.tokens <= leaseSize / 2 ? leaseSize : this.renewal(lease, leaseSize, now);
        if (wanted > 0 && !lease.refill) {
          this.refill(keyId, tier, lease, wanted).catch((error: unknown) => {
            // The next request without tokens asks Redis itself, and fails closed if it is down.
            this.logger?.warn({ key_id: keyId, err: (error as Error).message }, "rate limit lease refill failed");
          });
        }
        return {
          allowed: true,
          limit: tier.rate_limit_rps,
          remaining: lease.bucketRemaining + lease.tokens,
          retryAfterMs: 0,
          resetMs: Math.max(0, lease.resetAt - now),
        };
      }
      const result = await (lease.refill ?? this.refill(keyId, tier, lease, leaseSize));
      if (!result.allowed) return result;
    }
    // Others spent the refill first: take this request's token on its own.
    return this.takeFromRedis(keyId, tier, 1);
  }

  /** Tokens to renew a lease with (0: not yet), so a steady key never finds its lease lapsed. */
  private renewal(lease: Lease, leaseSize: number, now: number): number {
    if (now < lease.expiresAt - this.leaseMs / 2) return 0;
    return Math.max(1, Math.min(leaseSize - lease.tokens, 2 * lease.spent));
  }

  private leaseSize(tier: Tier): number {
    if (this.leaseMs <= 0) return 1;
    const burst = tier.burst ?? Math.max(1, Math.ceil(tier.rate_limit_rps));
    // Never lease more than a quarter of the burst: the other instances need tokens too.
    return Math.max(
      1,
      Math.min(this.maxLease, Math.floor((tier.rate_limit_rps * this.leaseMs) / 1000), Math.floor(burst / 4)),
    );
  }

  private refill(keyId: string, tier: Tier, lease: Lease, wanted: number): Promise<RateLimitResult> {
    lease.spent = 0;
    const pending = this.takeFromRedis(keyId, tier, wanted).then(
      (result) => {
        const now = this.now();
        lease.refill = undefined;
        if (result.granted > 0) {
          // Tokens of an expired lease are dropped, not carried over.
          lease.tokens = (lease.expiresAt > now ? lease.tokens : 0) + result.granted;
          lease.expiresAt = now + this.leaseMs;
          lease.bucketRemaining = result.remaining;
          lease.resetAt = now + result.resetMs;
        }
        return result;
      },
      (error: unknown) => {
        lease.refill = undefined;
        throw error;
      },
    );
    lease.refill = pending;
    return pending;
  }

  private prune(): void {
    const now = this.now();
    for (const [keyId, lease] of this.leases) if (lease.expiresAt <= now && !lease.refill) this.leases.delete(keyId);
  }

  private async takeFromRedis(
    keyId: string,
    tier: Tier,
    wanted: number,
  ): Promise<RateLimitResult & { granted: number }> {
    const intervalUs = Math.max(1, Math.round(1_000_000 / tier.rate_limit_rps));
    const burst = tier.burst ?? Math.max(1, Math.ceil(tier.rate_limit_rps));
    const bucket = this.keys.rateLimit(keyId);
    let reply: unknown;
    try {
      reply = await this.redis.evalsha(GCRA_SHA, 1, bucket, intervalUs, burst, wanted);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      reply = await this.redis.eval(GCRA_SCRIPT, 1, bucket, intervalUs, burst, wanted);
    }
    if (!Array.isArray(reply) || reply.length !== 4) throw new Error("unexpected rate limiter reply");
    const [granted = 0, remaining = 0, retryAfterUs = 0, resetUs = 0] = reply.map(Number);
    return {
      granted,
      allowed: granted > 0,
      limit: tier.rate_limit_rps,
      remaining: Math.max(0, remaining),
      retryAfterMs: Math.ceil(retryAfterUs / 1000),
      resetMs: Math.ceil(resetUs / 1000),
    };
  }
}
