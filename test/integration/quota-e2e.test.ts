import { periodOf } from "@keymeter/shared/billing";
import { afterEach, describe, expect, it } from "vitest";
import { call } from "../support/key-stack";
import { pollUntil } from "../support/poll";
import { QuotaStack } from "../support/quota-stack";

const stacks: QuotaStack[] = [];
afterEach(async () => {
  for (const stack of stacks.splice(0)) await stack.close();
});

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

describe("monthly quotas end to end (gateway -> Kafka -> aggregator -> ClickHouse -> quota worker)", () => {
  it("refuses a key within 5 s of crossing its quota; a new period, a tier upgrade and a raised quota each unflag it; webhooks arrive once, signed", async () => {
    const stack = await QuotaStack.start("quota_e2e");
    stacks.push(stack);
    const customerId = await stack.customer("Asia/Kolkata");
    const { key, secret } = await stack.keyStack.registry.create({
      customer_id: customerId,
      tier: "metered",
      scope: "read-write",
    });
    const url = `${stack.gateway.url}/v1/things/1`;
    const request = () => call(url, { headers: bearer(secret) });

    // A steady 50 requests/s until the first 429.
    let admitted = 0;
    let crossedAt = 0;
    let refusal: Awaited<ReturnType<typeof request>> | undefined;
    const deadline = Date.now() + 30_000;
    while (!refusal && Date.now() < deadline) {
      const response = await request();
      if (response.status === 200) {
        admitted++;
        if (admitted === 100) crossedAt = Date.now();
      } else {
        refusal = response;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(refusal?.status).toBe(429);
    expect(refusal?.body).toMatchObject({ error: { code: "quota_exceeded" } });
    expect(admitted).toBeGreaterThanOrEqual(100);
    const reactionMs = Date.now() - crossedAt;
    expect(reactionMs).toBeLessThan(5_000);

    // Both thresholds, once each, signed with the endpoint's secret.
    await pollUntil(() => stack.receiver.forKey(key.id).length >= 2 || undefined, {
      timeoutMs: 10_000,
      what: "two threshold webhooks",
    });
    const period = periodOf(Date.now(), "Asia/Kolkata");
    const first = stack.receiver.forKey(key.id);
    expect(first.map((hook) => hook.event.data.threshold_percent).sort()).toEqual([100, 80]);
    expect(first.every((hook) => hook.validSignature)).toBe(true);
    expect(first.every((hook) => hook.event.type === "quota.threshold_reached")).toBe(true);
    expect(new Set(first.map((hook) => hook.id)).size).toBe(2);

    const admittedWithin = async (what: string) =>
      pollUntil(async () => (await request()).status === 200 || undefined, { timeoutMs: 5_000, intervalMs: 50, what });
    const refusedWithin = async (what: string) =>
      pollUntil(async () => (await request()).status === 429 || undefined, { timeoutMs: 5_000, intervalMs: 50, what });
    const worker = stack.worker;
    if (!worker) throw new Error("no worker");

    // A new period (the worker's clock moves to next month): the sweep unflags at once.
    stack.clockOffsetMs = period.end - Date.now() + 60_000;
    await worker.requestSweep("manual");
    await admittedWithin("admitted in the next period");
    // Back to this period: flagged again.
    stack.clockOffsetMs = 0;
    await worker.requestSweep("manual");
    await refusedWithin("refused again in this period");

    // A tier upgrade (quota 1,000) unflags; the downgrade flags again.
    await stack.keyStack.registry.update(key.id, { tier: "metered_plus" });
    await admittedWithin("admitted after the upgrade");
    await stack.keyStack.registry.update(key.id, { tier: "metered" });
    await refusedWithin("refused after the downgrade");

    // A raised quota (per-key override) unflags.
    await stack.overrides.set(key.id, { monthly_quota: 5_000, reason: "support ticket 42" });
    await admittedWithin("admitted after the raised quota");

    // No threshold was delivered twice, whatever was re-checked meanwhile.
    await worker.requestSweep("manual");
    await new Promise((r) => setTimeout(r, 1_000));
    const all = stack.receiver.forKey(key.id);
    expect(all.map((hook) => hook.id).sort()).toEqual(first.map((hook) => hook.id).sort());
    expect(all.every((hook) => hook.event.data.quota === 100)).toBe(true);
    expect(all.find((hook) => hook.event.data.threshold_percent === 100)?.event.data.used).toBeGreaterThanOrEqual(100);
  }, 90_000);

  it("never blocks a key whose tier bills overage, and reports the overage", async () => {
    const stack = await QuotaStack.start("quota_bill");
    stacks.push(stack);
    const customerId = await stack.customer();
    const { key, secret } = await stack.keyStack.registry.create({
      customer_id: customerId,
      tier: "metered_bill",
      scope: "read-write",
    });
    for (let i = 0; i < 120; i++) {
      const response = await call(`${stack.gateway.url}/v1/things/${i}`, { headers: bearer(secret) });
      expect(response.status).toBe(200);
    }
    // The 100 % webhook says the quota was reached; no flag was set.
    await pollUntil(
      () => stack.receiver.forKey(key.id).some((h) => h.event.data.threshold_percent === 100) || undefined,
      {
        timeoutMs: 10_000,
        what: "the 100 % webhook",
      },
    );
    expect(await stack.keyStack.redis.exists(stack.keyStack.keys.quotaFlag(key.id))).toBe(0);
    const response = await call(`${stack.gateway.url}/v1/things/1`, { headers: bearer(secret) });
    expect(response.status).toBe(200);
  }, 60_000);
});
