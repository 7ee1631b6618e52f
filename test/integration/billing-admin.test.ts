import { Writable } from "node:stream";
import { buildAdminApp, createAdminBilling, runCli } from "@keymeter/admin-api";
import { KeyRegistry } from "@keymeter/shared/api-keys";
import { afterEach, describe, expect, it } from "vitest";
import { BillingStack } from "../support/billing-stack";

// `keymeter billing setup|reconcile`, `keymeter customers link` and the admin API's billing
// routes, on the real Redis and ClickHouse with the Stripe fake.

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

const NOW = Date.parse("2026-11-20T12:00:00Z");
let stack: BillingStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

function adminDeps(s: BillingStack) {
  const registry = new KeyRegistry({ redis: s.redis, keys: s.keys, tiers: s.tiers, logger: s.logger, now: s.now });
  const billing = createAdminBilling({
    redis: s.redis,
    clickhouse: s.clickhouse,
    keys: s.keys,
    tiers: s.tiers,
    logger: s.logger,
    provider: s.provider,
    live: true,
    closeGraceMs: 3_600_000,
    now: s.now,
  });
  return { registry, billing };
}

async function keymeter(s: BillingStack, ...args: string[]) {
  const out = new Capture();
  const err = new Capture();
  const { registry, billing } = adminDeps(s);
  const code = await runCli(
    ["node", "keymeter", ...args],
    () => ({ registry, tiers: s.tiers, billing: () => billing, close: async () => {} }),
    { out, err },
  );
  return { code, err: err.text, json: () => JSON.parse(out.text) as Record<string, unknown> };
}

describe("billing setup, links and reconciliation from the CLI and the admin API", () => {
  it("sets up meters, prices and customers idempotently, adopts given ids, and reconciles", async () => {
    stack = await BillingStack.start({}, NOW);
    const s = stack;
    await s.customers.create({ id: "cus_adm_a", time_zone: "Europe/Paris" });
    await s.customers.create({ id: "cus_adm_b" });

    const first = await keymeter(s, "billing", "setup");
    expect(first.code, first.err).toBe(0);
    const summary = first.json() as { tiers: Array<{ tier: string }>; customers: Array<{ customer_id: string }> };
    expect(summary.tiers.map((tier) => tier.tier)).toEqual(["pro", "enterprise"]);
    expect(summary.customers.map((customer) => customer.customer_id).sort()).toEqual(["cus_adm_a", "cus_adm_b"]);
    const creates = () =>
      ["/v1/billing/meters", "/v1/prices", "/v1/customers", "/v1/subscriptions"].map(
        (path) => s.fake.requestsTo("POST", path).length,
      );
    expect(creates()).toEqual([2, 2, 2, 2]);
    // Run again: everything is found, nothing created.
    expect((await keymeter(s, "billing", "setup")).code).toBe(0);
    expect(creates()).toEqual([2, 2, 2, 2]);
    // Anchored at the start of the customer's next calendar month in its zone (Paris: 23:00 UTC).
    const paris = await s.customers.get("cus_adm_a");
    const subscription = await s.fake.client().subscriptions.retrieve(paris?.stripe_subscription_id ?? "");
    expect(new Date(subscription.billing_cycle_anchor * 1000).toISOString()).toBe("2026-11-30T23:00:00.000Z");
    expect(subscription.items.data).toHaveLength(2);

    // Adopting an existing Stripe customer (a subscription is made for it).
    const existing = await s.fake.client().customers.create({ name: "made in the dashboard" });
    const linked = await keymeter(s, "customers", "link", "cus_adm_c", "--stripe-customer", existing.id);
    expect(linked.code, linked.err).toBe(0);
    expect(linked.json()).toMatchObject({ customer_id: "cus_adm_c", stripe_customer_id: existing.id, stored: true });
    expect((await s.customers.get("cus_adm_c"))?.stripe_customer_id).toBe(existing.id);
    const bad = await keymeter(s, "customers", "link", "cus_adm_c", "--stripe-subscription", "sub_123");
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("stripe_customer_id");

    // Usage nobody synced yet: reconciliation of the current month lists every difference.
    await s.insertUsage([
      { customer: "cus_adm_b", tier: "enterprise", units: 40, at: NOW - 3_600_000 },
      { customer: "cus_unlinked", tier: "pro", units: 9, at: NOW - 3_600_000 },
    ]);
    const report = await keymeter(s, "billing", "reconcile", "--period", "2026-11");
    expect(report.code, report.err).toBe(0);
    const differences = (
      report.json() as { differences: Array<{ customer_id: string; kind: string; tier: string | null }> }
    ).differences;
    expect(differences).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ customer_id: "cus_adm_b", kind: "stripe_total_mismatch", tier: "enterprise" }),
        expect.objectContaining({ customer_id: "cus_adm_b", kind: "invoice_quantity_mismatch", tier: "enterprise" }),
        expect.objectContaining({ customer_id: "cus_unlinked", kind: "not_linked" }),
      ]),
    );

    // The admin API answers the same, behind an admin credential.
    const token = "t".repeat(40);
    const { registry, billing } = adminDeps(s);
    const app = buildAdminApp({ registry, tiers: s.tiers, logger: s.logger, bootstrapToken: token, billing });
    const auth = { authorization: `Bearer ${token}` };
    const viaApi = await app.inject({
      method: "GET",
      url: "/v1/billing/reconciliation?customer_id=cus_adm_b&period=2026-11",
      headers: auth,
    });
    expect(viaApi.statusCode).toBe(200);
    expect(viaApi.json().customers[0].tiers).toEqual(
      expect.arrayContaining([expect.objectContaining({ tier: "enterprise", units: 40, amount: 2, stripe_units: 0 })]),
    );
    expect(
      (await app.inject({ method: "POST", url: "/v1/billing/setup", headers: auth, payload: {} })).statusCode,
    ).toBe(200);
    // The dashboard-made customer and its new subscription; the setup over the API created nothing more.
    expect(creates()).toEqual([2, 2, 3, 3]);
    const badPeriod = await app.inject({
      method: "GET",
      url: "/v1/billing/reconciliation?period=11-2026",
      headers: auth,
    });
    expect(badPeriod.statusCode).toBe(400);
    expect((await app.inject({ method: "GET", url: "/v1/billing/reconciliation" })).statusCode).toBe(401);
    await app.close();
  }, 60_000);
});
