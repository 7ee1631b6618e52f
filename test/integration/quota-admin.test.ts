import { Writable } from "node:stream";
import { buildAdminApp, createQuotaDeps, runCli } from "@keymeter/admin-api";
import { periodOf, setQuotaFlag } from "@keymeter/shared/billing";
import type { FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { KeyStack } from "../support/key-stack";
import { createTestPipeline, type TestPipeline } from "../support/pipeline";
import { QUOTA_TIERS } from "../support/quota-stack";
import { insertUsage } from "../support/usage-inserts";

const BOOTSTRAP = "bootstrap-token-for-tests-0123456789abcdef";
const auth = { authorization: `Bearer ${BOOTSTRAP}` };

interface Opened {
  stack: KeyStack;
  pipeline: TestPipeline;
  app: FastifyInstance;
}
const opened: Opened[] = [];
afterEach(async () => {
  for (const { stack, pipeline, app } of opened.splice(0)) {
    await app.close();
    await stack.close();
    await pipeline.close();
  }
});

async function admin(): Promise<Opened & { deps: ReturnType<typeof createQuotaDeps> }> {
  const stack = new KeyStack({ tiers: QUOTA_TIERS });
  const pipeline = await createTestPipeline("quota_admin", { partitions: 1 });
  const deps = createQuotaDeps({
    redis: stack.redis,
    clickhouse: pipeline.clickhouse,
    keys: stack.keys,
    tiers: QUOTA_TIERS,
    logger: stack.logger,
  });
  const app = buildAdminApp({
    registry: stack.registry,
    tiers: QUOTA_TIERS,
    logger: stack.logger,
    bootstrapToken: BOOTSTRAP,
    quota: deps,
  });
  const entry = { stack, pipeline, app };
  opened.push(entry);
  return { ...entry, deps };
}

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

describe("customers and quota status (admin API and CLI, real Redis and ClickHouse)", () => {
  it("manages customers; webhook secrets are shown once and never logged", async () => {
    const { app, stack } = await admin();
    const created = await app.inject({
      method: "POST",
      url: "/v1/customers",
      headers: auth,
      payload: {
        id: "cus_acme",
        name: "Acme",
        time_zone: "Asia/Kolkata",
        webhooks: [{ url: "https://acme.test/hooks" }],
      },
    });
    expect(created.statusCode).toBe(201);
    const body = created.json<{
      customer: { time_zone: string; webhooks: Array<{ id: string; secret_hint: string }>; stripe_customer_id: null };
      webhook_secrets: Array<{ webhook_id: string; secret: string }>;
    }>();
    expect(body.customer.time_zone).toBe("Asia/Kolkata");
    expect(body.customer.stripe_customer_id).toBeNull();
    const secret = body.webhook_secrets[0]?.secret ?? "";
    expect(secret).toMatch(/^whsec_[A-Za-z0-9]{32}$/);
    expect(body.customer.webhooks[0]?.secret_hint).toBe(secret.slice(-4));

    const shown = await app.inject({ method: "GET", url: "/v1/customers/cus_acme", headers: auth });
    expect(shown.statusCode).toBe(200);
    expect(shown.body).not.toContain(secret);

    const duplicate = await app.inject({
      method: "POST",
      url: "/v1/customers",
      headers: auth,
      payload: { id: "cus_acme" },
    });
    expect(duplicate.statusCode).toBe(409);
    const badZone = await app.inject({
      method: "POST",
      url: "/v1/customers",
      headers: auth,
      payload: { id: "cus_x", time_zone: "Mars/Olympus" },
    });
    expect(badZone.statusCode).toBe(400);
    expect(badZone.json<{ error: { code: string; message: string } }>().error.message).toContain("time_zone");
    const unauthenticated = await app.inject({ method: "GET", url: "/v1/customers" });
    expect(unauthenticated.statusCode).toBe(401);

    const patched = await app.inject({
      method: "PATCH",
      url: "/v1/customers/cus_acme",
      headers: auth,
      payload: { time_zone: "Europe/Paris", stripe_customer_id: "cus_Stripe123", stripe_subscription_id: "sub_456" },
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json<{ customer: { version: number; stripe_customer_id: string } }>().customer).toMatchObject({
      version: 2,
      stripe_customer_id: "cus_Stripe123",
    });

    const added = await app.inject({
      method: "POST",
      url: "/v1/customers/cus_acme/webhooks",
      headers: auth,
      payload: { url: "http://127.0.0.1:9/second" },
    });
    expect(added.statusCode).toBe(201);
    const second = added.json<{ webhook_secret: { webhook_id: string; secret: string } }>().webhook_secret;
    const removed = await app.inject({
      method: "DELETE",
      url: `/v1/customers/cus_acme/webhooks/${second.webhook_id}`,
      headers: auth,
    });
    expect(removed.json<{ customer: { webhooks: unknown[] } }>().customer.webhooks).toHaveLength(1);

    const list = await app.inject({ method: "GET", url: "/v1/customers", headers: auth });
    expect(list.json<{ customers: Array<{ id: string }> }>().customers.map((c) => c.id)).toEqual(["cus_acme"]);
    expect((await app.inject({ method: "DELETE", url: "/v1/customers/cus_acme", headers: auth })).statusCode).toBe(200);
    expect((await app.inject({ method: "GET", url: "/v1/customers/cus_acme", headers: auth })).statusCode).toBe(404);

    expect(stack.logs.text).toContain("customer created");
    expect(stack.logs.text).not.toContain(secret);
    expect(stack.logs.text).not.toContain(second.secret);
  });

  it("reports month-to-date usage, quota, remaining, overage, flag and period end per key and per customer", async () => {
    const { app, stack, pipeline, deps } = await admin();
    await deps.customers.create({ id: "cus_in", time_zone: "Asia/Kolkata" });
    const { key } = await stack.registry.create({ customer_id: "cus_in", tier: "metered" });
    const { key: billed } = await stack.registry.create({ customer_id: "cus_in", tier: "metered_bill" });
    const period = periodOf(Date.now(), "Asia/Kolkata");
    // 30 units this period (one in its first second), 7 in the second before it: not this period's.
    await insertUsage(pipeline.clickhouse, [
      { keyId: key.id, at: period.start, units: 1 },
      { keyId: key.id, at: Math.min(Date.now(), period.end - 1000), units: 29 },
      { keyId: key.id, at: period.start - 1000, units: 7 },
      { keyId: billed.id, at: Math.min(Date.now(), period.end - 1000), units: 130 },
    ]);

    const status = await app.inject({ method: "GET", url: `/v1/keys/${key.id}/quota`, headers: auth });
    expect(status.statusCode).toBe(200);
    expect(status.json<{ quota: unknown }>().quota).toMatchObject({
      key_id: key.id,
      customer_id: "cus_in",
      time_zone: "Asia/Kolkata",
      period: { id: period.id, start: new Date(period.start).toISOString(), end: new Date(period.end).toISOString() },
      used: 30,
      quota: 100,
      quota_source: "tier",
      overage_policy: "block",
      remaining: 70,
      overage: 0,
      flagged: false,
    });

    await setQuotaFlag(stack.redis, stack.keys, key.id, {
      used: 100,
      quota: 100,
      period_end: new Date(period.end).toISOString(),
    });
    const override = await app.inject({
      method: "PUT",
      url: `/v1/keys/${key.id}/quota-override`,
      headers: auth,
      payload: { monthly_quota: 500, reason: "ticket 7" },
    });
    expect(override.statusCode).toBe(200);
    const customer = await app.inject({ method: "GET", url: "/v1/customers/cus_in/quota", headers: auth });
    const quota = customer.json<{
      quota: {
        used: number;
        overage: number;
        keys: Array<{ key_id: string; quota: number; flagged: boolean; overage: number }>;
      };
    }>().quota;
    expect(quota.used).toBe(160);
    expect(quota.overage).toBe(30);
    expect(quota.keys.find((k) => k.key_id === key.id)).toMatchObject({ quota: 500, flagged: true });
    expect(quota.keys.find((k) => k.key_id === billed.id)).toMatchObject({ quota: 100, overage: 30, flagged: false });

    // The same from the CLI.
    const out = new Capture();
    const err = new Capture();
    const code = await runCli(
      ["node", "keymeter", "keys", "quota", key.id],
      () => ({ registry: stack.registry, tiers: QUOTA_TIERS, quota: deps, close: async () => undefined }),
      { out, err },
    );
    expect(err.text).toBe("");
    expect(code).toBe(0);
    expect(JSON.parse(out.text)).toMatchObject({ used: 30, quota: 500, quota_source: "override", remaining: 470 });

    const cli = async (...args: string[]) => {
      const o = new Capture();
      const e = new Capture();
      const c = await runCli(
        ["node", "keymeter", ...args],
        () => ({ registry: stack.registry, tiers: QUOTA_TIERS, quota: deps, close: async () => undefined }),
        { out: o, err: e },
      );
      return { code: c, out: o.text, err: e.text };
    };
    const made = await cli(
      "customers",
      "create",
      "cus_cli",
      "--time-zone",
      "Pacific/Chatham",
      "--webhook",
      "https://x.test/h",
    );
    expect(made.code).toBe(0);
    expect(JSON.parse(made.out).webhook_secrets[0].secret).toMatch(/^whsec_/);
    const cleared = await cli("keys", "clear-quota", key.id);
    expect(JSON.parse(cleared.out)).toEqual({ removed: true });
    const bad = await cli("customers", "update", "cus_cli", "--time-zone", "Nowhere/Land");
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("time_zone");
  });
});
