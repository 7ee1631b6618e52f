import { KeyCache } from "@keymeter/gateway";
import { hashSecret } from "@keymeter/shared/api-keys";
import { createRedis } from "@keymeter/shared/stores";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { IsolatedServices } from "../support/isolated-services";
import { call, KeyStack } from "../support/key-stack";
import { pollUntil, waitFor } from "../support/poll";
import { services } from "../support/services";

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });
const stacks: KeyStack[] = [];
afterEach(async () => {
  for (const s of stacks.splice(0)) await s.close();
});

describe("gateway promises (real Redis)", () => {
  it("a revocation reaches every instance within a second", async () => {
    const s = new KeyStack();
    stacks.push(s);
    const instances = [await s.gateway(), await s.gateway(), await s.gateway()];
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "fast" });
    for (const gw of instances) expect((await call(`${gw.url}/v1/x`, { headers: bearer(secret) })).status).toBe(200);
    // Every instance holds the key now: without the pub/sub message each would serve it for 30 s.
    for (const gw of instances) expect(gw.cache.size).toBe(1);

    const revokedAt = Date.now();
    await s.registry.revoke(key.id);
    const refusedAfter = await Promise.all(
      instances.map((gw, i) =>
        pollUntil(
          async () => (await call(`${gw.url}/v1/x`, { headers: bearer(secret) })).status === 401 && Date.now(),
          { timeoutMs: 1_000, intervalMs: 10, what: `the revocation to reach instance ${i + 1}` },
        ),
      ),
    );
    for (const at of refusedAfter) expect(at - revokedAt).toBeLessThan(1_000);
  });

  it("remembers an unknown hash for 5 s: no Redis look-up before, a fresh one after", async () => {
    const s = new KeyStack();
    stacks.push(s);
    const redis = createRedis(services().redisUrl);
    const subscriber = createRedis(services().redisUrl);
    // The key exists before the cache subscribes, so its creation message cannot race the test.
    const { secret } = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    let clock = Date.now();
    const cache = new KeyCache({ redis, subscriber, keys: s.keys, logger: s.logger, now: () => clock });
    await cache.start();
    try {
      const hash = hashSecret(secret);
      // Hide the key's hash index entry: for the cache, an unknown hash.
      const hidden = `${s.prefix}hidden`;
      await s.redis.rename(s.keys.keyByHash(hash), hidden);
      expect(await cache.lookup(hash)).toBeUndefined();
      await s.redis.rename(hidden, s.keys.keyByHash(hash));

      clock += 4_990;
      // Still remembered as unknown: answered from memory, without asking Redis.
      expect(cache.lookup(hash)).toBeUndefined();
      clock += 20;
      expect((await cache.lookup(hash))?.record.customer_id).toBe("cus_1");
    } finally {
      await Promise.all([redis.quit(), subscriber.quit()]);
    }
  });
});

describe("gateway with its Redis server stopped (private Redis)", () => {
  let isolated: IsolatedServices;
  beforeAll(async () => {
    isolated = await IsolatedServices.create();
    isolated.up("redis");
  }, 60_000);
  afterAll(() => isolated.destroy(), 60_000);

  it("fails closed with 503 on a cache miss and for the limiter, and recovers when Redis is back", async () => {
    const s = new KeyStack({ redisUrl: isolated.redisUrl });
    stacks.push(s);
    const gw = await s.gateway();
    const cached = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    const uncached = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    expect((await call(`${gw.url}/v1/x`, { headers: bearer(cached.secret) })).status).toBe(200);

    isolated.down("redis");
    for (const [what, secret] of [
      ["the limiter (key cached)", cached.secret],
      ["a cache miss", uncached.secret],
    ]) {
      const started = Date.now();
      const answer = await call(`${gw.url}/v1/x`, { headers: bearer(secret ?? "") });
      expect({ what, status: answer.status }).toEqual({ what, status: 503 });
      expect(answer.body).toMatchObject({
        error: { code: "service_unavailable", message: "the gateway cannot check API keys right now; try again" },
      });
      // Answered promptly (bounded retries), not held until Redis returns.
      expect(Date.now() - started).toBeLessThan(5_000);
    }
    expect(s.upstreamRequests).toHaveLength(1);

    isolated.up("redis");
    // The registry survived the restart (AOF); both keys work again.
    await waitFor(
      "the gateway to recover",
      async () => (await call(`${gw.url}/v1/x`, { headers: bearer(uncached.secret) })).status === 200,
      15_000,
    );
    expect((await call(`${gw.url}/v1/x`, { headers: bearer(cached.secret) })).status).toBe(200);
  });
});
