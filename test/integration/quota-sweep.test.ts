import type { QuotaWorker } from "@keymeter/quota-worker";
import {
  ClickHouseUsageReader,
  clearQuotaFlag,
  periodOf,
  readQuotaFlags,
  setQuotaFlag,
} from "@keymeter/shared/billing";
import { SWEEP_SCHEDULER_ID } from "@keymeter/shared/jobs";
import { afterEach, describe, expect, it } from "vitest";
import { call } from "../support/key-stack";
import { pollUntil } from "../support/poll";
import { QuotaStack } from "../support/quota-stack";
import { insertUsage } from "../support/usage-inserts";

const stacks: QuotaStack[] = [];
/** Sweeps run only when a test calls them (the scheduled one is an hour away). */
const MANUAL_SWEEPS = { workerOptions: { sweepOnStart: false, sweepIntervalMs: 3_600_000 } };
afterEach(async () => {
  for (const stack of stacks.splice(0)) await stack.close();
});

/** Waits until no check job is waiting or running. */
async function drained(worker: QuotaWorker): Promise<void> {
  await pollUntil(
    async () => {
      const counts = await worker.checks.queue.getJobCounts("waiting", "active", "delayed", "prioritized");
      return Object.values(counts).every((n) => n === 0) || undefined;
    },
    { what: "the check queue to drain" },
  );
}

describe("quota sweep (real Redis and ClickHouse)", () => {
  it("flags a key whose usage reached ClickHouse without a counter bump (a crash between insert and hook), and raises its counter", async () => {
    // The worker starts after the key exists, so no key-change check races the assertions.
    const stack = await QuotaStack.start("quota_sweep_repair", { worker: false });
    stacks.push(stack);
    const customerId = await stack.customer("America/New_York");
    const { key, secret } = await stack.keyStack.registry.create({ customer_id: customerId, tier: "metered" });
    const period = periodOf(Date.now(), "America/New_York");
    // Straight into ClickHouse: the aggregator's hook never saw these.
    await insertUsage(stack.pipeline.clickhouse, [{ keyId: key.id, at: Date.now() - 1000, units: 120 }]);
    const { keyStack } = stack;
    expect(await keyStack.redis.get(keyStack.keys.usageCounter(period.id, key.id))).toBeNull();
    expect((await call(`${stack.gateway.url}/v1/x`, { headers: { authorization: `Bearer ${secret}` } })).status).toBe(
      200,
    );
    const worker = await stack.startWorker(MANUAL_SWEEPS.workerOptions);

    const result = await worker.enforcer.sweep();
    expect(result).toMatchObject({ flagged: 1, set: 1 });
    expect(await keyStack.redis.get(keyStack.keys.usageCounter(period.id, key.id))).toBe("120");
    const flag = (await readQuotaFlags(keyStack.redis, keyStack.keys, [key.id])).get(key.id);
    expect(flag).toEqual({ used: 120, quota: 100, period_end: new Date(period.end).toISOString() });
    // The flag expires at the period end.
    const ttl = await keyStack.redis.pttl(keyStack.keys.quotaFlag(key.id));
    expect(Math.abs(Date.now() + ttl - period.end)).toBeLessThan(5_000);
    await pollUntil(
      async () =>
        (await call(`${stack.gateway.url}/v1/x`, { headers: { authorization: `Bearer ${secret}` } })).status === 429 ||
        undefined,
      { what: "a 429 after the sweep" },
    );
    // No flag is rewritten on a second sweep (no pub/sub noise). Its counter may still be raised
    // by one: the admitted request above reaches ClickHouse through the pipeline meanwhile.
    expect(await worker.enforcer.sweep()).toMatchObject({ flagged: 1, set: 0, cleared: 0 });

    // The sweep runs from a BullMQ job scheduler, not a timer.
    const schedulers = await worker.sweeps.getJobSchedulers();
    expect(schedulers.map((s) => s.key)).toContain(SWEEP_SCHEDULER_ID);
  });

  it("reads month-to-date usage exactly in half-hour, 45-minute and DST zones (hourly rollup plus raw partial hours)", async () => {
    const stack = await QuotaStack.start("quota_sweep_zones", MANUAL_SWEEPS);
    stacks.push(stack);
    const worker = stack.worker;
    if (!worker) throw new Error("no worker");
    const zones = ["UTC", "Asia/Kolkata", "Pacific/Chatham", "America/New_York", "Asia/Kathmandu"];
    const now = Date.now();
    const expected = new Map<string, number>();
    const rows = [];
    for (const zone of zones) {
      const customerId = await stack.customer(zone);
      const { key } = await stack.keyStack.registry.create({ customer_id: customerId, tier: "metered_plus" });
      const period = periodOf(now, zone);
      rows.push(
        { keyId: key.id, at: period.start, units: 3 }, // the period's first second: in
        { keyId: key.id, at: period.start - 1000, units: 1000 }, // the last second before it: out
        { keyId: key.id, at: Math.min(now, period.start + 40 * 60_000), units: 5 }, // inside the first hour
        { keyId: key.id, at: now - 1000, units: 7 },
        { keyId: key.id, at: period.end, units: 2000 }, // the next period's first second: out
      );
      expected.set(key.id, 15);
    }
    await insertUsage(stack.pipeline.clickhouse, rows);
    await worker.enforcer.sweep();
    const reader = new ClickHouseUsageReader(stack.pipeline.clickhouse);
    for (const [keyId, units] of expected) {
      const subject = await stack.keyStack.registry.get(keyId);
      const zone = (await stack.customers.get(subject?.customer_id ?? ""))?.time_zone ?? "UTC";
      const period = periodOf(now, zone);
      const counter = await stack.keyStack.redis.get(stack.keyStack.keys.usageCounter(period.id, keyId));
      expect({ zone, sweep: Number(counter) }).toEqual({ zone, sweep: units });
      expect({ zone, check: await reader.keyUnits(keyId, period) }).toEqual({ zone, check: units });
    }
  });

  it("clears stale flags but never undoes a flag recorded from fresher usage", async () => {
    const stack = await QuotaStack.start("quota_sweep_clear", MANUAL_SWEEPS);
    stacks.push(stack);
    const worker = stack.worker;
    if (!worker) throw new Error("no worker");
    const { keyStack } = stack;
    const customerId = await stack.customer();
    const { key: stale } = await keyStack.registry.create({ customer_id: customerId, tier: "metered" });
    const { key: fresh } = await keyStack.registry.create({ customer_id: customerId, tier: "metered" });
    const period = periodOf(Date.now(), "UTC");
    const periodEnd = new Date(period.end).toISOString();
    // A flag from an earlier period (or a lower quota) goes; one recording 150 units this period stays.
    await setQuotaFlag(keyStack.redis, keyStack.keys, stale.id, {
      used: 150,
      quota: 50,
      period_end: new Date(period.end + 86_400_000).toISOString(),
    });
    await setQuotaFlag(keyStack.redis, keyStack.keys, fresh.id, { used: 150, quota: 100, period_end: periodEnd });
    await worker.enforcer.sweep();
    // Creating the keys also queued checks (key changes): let them finish, they follow the same rule.
    await drained(worker);
    const flags = await readQuotaFlags(keyStack.redis, keyStack.keys, [stale.id, fresh.id]);
    expect([...flags.keys()]).toEqual([fresh.id]);
    // An unconditional clear (an upgrade's check) removes it.
    expect(await clearQuotaFlag(keyStack.redis, keyStack.keys, fresh.id)).toBe(true);
  });
});
