import { RateLimiter } from "@keymeter/gateway";
import { parseTiers } from "@keymeter/shared/billing";
import { createRedis, redisKeys } from "@keymeter/shared/stores";
import { afterEach, describe, expect, it } from "vitest";
import { services, uniqueName } from "../support/services";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** 1,000 requests/s with 100 ms leases: 100 tokens per lease. */
const tier = parseTiers({
  tiers: [{ name: "steady", rate_limit_rps: 1000, monthly_quota: null, overage: "block" }],
}).get("steady");

describe("rate limiter leases (real Redis)", () => {
  it("renews the lease of a key spending less than half of it per lease, so no request waits for Redis", async () => {
    if (!tier) throw new Error("tier missing");
    const prefix = `${uniqueName("lease")}:`;
    const redis = createRedis(services().redisUrl);
    cleanups.push(async () => {
      const found = await redis.keys(`${prefix}*`);
      if (found.length > 0) await redis.del(...found);
      await redis.quit();
    });
    let clock = 1_000_000;
    const limiter = new RateLimiter(redis, redisKeys(prefix), { leaseMs: 100, now: () => clock });
    /** True when the token came from the lease: settled with no I/O (microtasks only). */
    const takeFromLease = async () => {
      let settled = false;
      const taking = limiter.take("key_steady", tier).then((result) => {
        settled = true;
        return result;
      });
      for (let i = 0; i < 50; i++) await Promise.resolve();
      const fromLease = settled;
      expect((await taking).allowed).toBe(true);
      return fromLease;
    };
    // The first request leases from Redis.
    expect(await takeFromLease()).toBe(false);
    // Then 10 requests per lease (a tenth of it), for five leases' time.
    const fromRedis: number[] = [];
    for (let step = 1; step <= 50; step++) {
      clock += 10;
      if (!(await takeFromLease())) fromRedis.push(clock);
      // Let a background renewal land (replies come in order on the connection).
      await redis.ping();
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(fromRedis).toEqual([]);
  });
});
