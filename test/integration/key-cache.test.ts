import { KeyCache } from "@keymeter/gateway";
import { hashSecret, type KeyRecord } from "@keymeter/shared/api-keys";
import { createRedis } from "@keymeter/shared/stores";
import { afterEach, describe, expect, it } from "vitest";
import { KeyStack } from "../support/key-stack";
import { pollUntil } from "../support/poll";
import { services } from "../support/services";

const opened: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close();
});

async function setup(now: () => number = Date.now) {
  const stack = new KeyStack();
  const redis = createRedis(services().redisUrl);
  const subscriber = createRedis(services().redisUrl);
  opened.push(
    () => stack.close(),
    () => redis.quit(),
    () => subscriber.quit(),
  );
  // The key exists before the cache subscribes, so its creation message cannot race the test.
  const { key, secret } = await stack.registry.create({ customer_id: "c", tier: "free" });
  const cache = new KeyCache({ redis, subscriber, keys: stack.keys, logger: stack.logger, ttlMs: 30_000, now });
  await cache.start();
  /** Changes the record behind the registry's back: no pub/sub message, as if it was lost. */
  const silentlyRevoke = async () => {
    const raw = (await stack.redis.get(stack.keys.keyRecord(key.id))) ?? "";
    const record = JSON.parse(raw) as KeyRecord;
    await stack.redis.set(stack.keys.keyRecord(key.id), JSON.stringify({ ...record, state: "revoked" }));
  };
  return { cache, subscriber, hash: hashSecret(secret), silentlyRevoke };
}

describe("key cache (real Redis)", () => {
  it("serves hits without Redis and reloads after its TTL when a change message was lost", async () => {
    let clock = Date.now();
    const { cache, hash, silentlyRevoke } = await setup(() => clock);
    expect((await cache.lookup(hash))?.record.state).toBe("active");
    await silentlyRevoke();
    // A hit is answered synchronously, from memory.
    const hit = cache.lookup(hash);
    expect(hit instanceof Promise).toBe(false);
    expect((await hit)?.record.state).toBe("active");
    clock += 30_001;
    expect((await cache.lookup(hash))?.record.state).toBe("revoked");
  });

  it("drops everything when its subscription reconnects, since messages may have been missed", async () => {
    const { cache, subscriber, hash, silentlyRevoke } = await setup();
    expect((await cache.lookup(hash))?.record.state).toBe("active");
    await silentlyRevoke();
    subscriber.disconnect(true);
    await pollUntil(async () => (await cache.lookup(hash))?.record.state === "revoked", {
      timeoutMs: 5_000,
      what: "the cache to be dropped after the reconnect",
    });
  });

  it("remembers an unknown hash briefly and answers undefined", async () => {
    const { cache } = await setup();
    const unknown = hashSecret("km_live_unknown");
    expect(await cache.lookup(unknown)).toBeUndefined();
    expect(cache.lookup(unknown)).toBeUndefined();
  });
});
