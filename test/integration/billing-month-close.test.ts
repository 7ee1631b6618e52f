import { afterEach, describe, expect, it } from "vitest";
import { BillingStack } from "../support/billing-stack";
import { pollUntil } from "../support/poll";

// Month close with an injected clock (the worker's and the fake's move together): closed
// periods hold exactly ClickHouse's units, stamped inside the period; an event that arrives
// after the close is reported by reconciliation and billed in no month.

const T0 = Date.parse("2026-11-30T23:40:00Z");
const NOV = { start: Date.parse("2026-11-01T00:00:00Z"), end: Date.parse("2026-12-01T00:00:00Z") };
const DEC = { start: NOV.end, end: Date.parse("2027-01-01T00:00:00Z") };
const NOV_KOLKATA = { start: Date.parse("2026-10-31T18:30:00Z"), end: Date.parse("2026-11-30T18:30:00Z") };
const at = (iso: string) => Date.parse(iso);

let stack: BillingStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe("billing worker: month close", () => {
  it("closes each customer's month in its zone with ClickHouse's totals; late usage is reported, not billed", async () => {
    stack = await BillingStack.start({}, T0);
    const s = stack;
    const ids = await s.linkedCustomers(["cus_close_a", "cus_close_c"]);
    for (const [id, stripeId] of await s.linkedCustomers(["cus_close_b"], "Asia/Kolkata")) ids.set(id, stripeId);
    for (const [id, stripeId] of await s.linkedCustomers(["cus_close_p"], "Europe/Paris")) ids.set(id, stripeId);
    const stripe = (id: string) => ids.get(id) ?? "";
    await s.insertUsage([
      { customer: "cus_close_a", tier: "pro", units: 7, at: at("2026-10-31T22:00:00Z") }, // October
      { customer: "cus_close_a", tier: "pro", units: 100, at: at("2026-11-10T10:00:00Z") },
      { customer: "cus_close_a", tier: "enterprise", units: 50, at: at("2026-11-20T10:00:00Z") }, // upgraded mid-month
      { customer: "cus_close_c", tier: "pro", units: 2_000_000, at: at("2026-11-15T10:00:00Z") },
      { customer: "cus_close_b", tier: "pro", units: 30, at: at("2026-11-30T12:00:00Z") }, // 17:30 in Kolkata: November
      { customer: "cus_close_b", tier: "pro", units: 4, at: at("2026-11-30T19:00:00Z") }, // 00:30 Dec 1 in Kolkata
      { customer: "cus_close_p", tier: "pro", units: 20, at: at("2026-11-15T10:00:00Z") },
      { customer: "cus_close_p", tier: "pro", units: 6, at: at("2026-11-30T23:20:00Z") }, // 00:20 Dec 1 in Paris
    ]);
    const worker = await s.startWorker({ syncEveryMs: 3_600_000, closeEveryMs: 3_600_000 });
    const closed = async (id: string, periodId: string) =>
      (await worker.reconciler.reconcile({ customerId: id, periodId, stripe: false })).customers[0]?.state === "closed";

    // At T0 Kolkata's November is over (it ended 18:30 UTC): the start-up close pass closes it.
    await pollUntil(() => closed("cus_close_b", "2026-11"), { timeoutMs: 20_000, what: "Kolkata's November closed" });
    expect(s.stripeTotal(stripe("cus_close_b"), "pro", NOV_KOLKATA)).toBe(30);
    // Paris' November ended at 23:00 UTC: closed too, stamped an hour inside the month (daylight
    // saving: Stripe's period may end up to an hour early, see stampWindow); its December reading
    // waits until Stripe's December surely began.
    await pollUntil(() => closed("cus_close_p", "2026-11"), { timeoutMs: 20_000, what: "Paris' November closed" });
    const NOV_PARIS = { start: Date.parse("2026-10-31T23:00:00Z"), end: Date.parse("2026-11-30T23:00:00Z") };
    expect(s.stripeTotal(stripe("cus_close_p"), "pro", NOV_PARIS)).toBe(20);
    expect(
      s.fake.meterEvents.filter((event) => event.customer === stripe("cus_close_p")).map((e) => e.timestamp),
    ).toEqual([NOV_PARIS.end / 1000 - 3600 - 1]);
    // And October for the UTC customer: its own month, its own total.
    await pollUntil(() => closed("cus_close_a", "2026-10"), { timeoutMs: 20_000, what: "October closed" });

    // Usage arriving before the close counts.
    await s.insertUsage([{ customer: "cus_close_a", tier: "pro", units: 5, at: at("2026-11-30T23:50:00Z") }]);
    s.setNow(at("2026-12-01T00:10:00Z"));
    await worker.requestClose();
    await pollUntil(async () => (await closed("cus_close_a", "2026-11")) && (await closed("cus_close_c", "2026-11")), {
      timeoutMs: 20_000,
      what: "November closed for the UTC customers",
    });
    for (const id of ["cus_close_a", "cus_close_c"]) {
      const units = await s.units(id, NOV);
      for (const tier of ["pro", "enterprise"]) {
        expect(s.stripeTotal(stripe(id), tier, NOV), `${id} ${tier}`).toBe(units.get(tier) ?? 0);
      }
    }
    expect(await s.units("cus_close_a", NOV)).toEqual(
      new Map([
        ["pro", 105],
        ["enterprise", 50],
      ]),
    );
    // The close events are stamped at the period's last second: inside November.
    const closeEvents = s.fake.meterEvents.filter(
      (event) => event.customer === stripe("cus_close_a") && event.value === 105,
    );
    expect(closeEvents.map((event) => event.timestamp)).toEqual([NOV.end / 1000 - 1]);
    const audit = await s.clickhouse.query({
      query:
        "SELECT customer_id, tier, value FROM billing_sync_log WHERE kind = 'closed' AND period_id = '2026-11' ORDER BY customer_id, tier",
      format: "JSONEachRow",
    });
    expect(await audit.json()).toEqual([
      { customer_id: "cus_close_a", tier: "enterprise", value: "50" },
      { customer_id: "cus_close_a", tier: "pro", value: "105" },
      { customer_id: "cus_close_b", tier: "pro", value: "30" },
      { customer_id: "cus_close_c", tier: "pro", value: "2000000" },
      { customer_id: "cus_close_p", tier: "pro", value: "20" },
    ]);

    // A late November event, and December usage; another close pass and a sync run.
    await s.insertUsage([
      { customer: "cus_close_a", tier: "pro", units: 3, at: at("2026-11-30T23:58:00Z") },
      { customer: "cus_close_a", tier: "pro", units: 11, at: at("2026-12-01T00:05:00Z") },
    ]);
    await worker.requestClose();
    await worker.requestSync("pro");
    await pollUntil(
      () =>
        s.stripeTotal(stripe("cus_close_a"), "pro", DEC) === 11 &&
        s.stripeTotal(stripe("cus_close_p"), "pro", { start: NOV_PARIS.end, end: DEC.end }) === 6,
      { timeoutMs: 20_000, what: "December's usage synced" },
    );
    // Billed in no month: November keeps the closed total, December has only December's units.
    expect(s.stripeTotal(stripe("cus_close_a"), "pro", NOV)).toBe(105);

    const november = await worker.reconciler.reconcile({ customerId: "cus_close_a", periodId: "2026-11" });
    expect(november.differences).toEqual([
      expect.objectContaining({ tier: "pro", kind: "late_usage", expected: 108, actual: 105 }),
    ]);
    expect(november.customers[0]?.tiers.find((line) => line.tier === "pro")).toMatchObject({
      units: 108,
      sent_units: 105,
      stripe_units: 105,
    });
    // The worker's gauge (previous month, no Stripe calls) shows it too.
    expect(await worker.refreshDifferences()).toMatchObject({ late_usage: 1, not_closed: 0, not_linked: 0 });
    const gauge = await worker.metrics.differences.get();
    expect(gauge.values.find((value) => value.labels.kind === "late_usage")?.value).toBe(1);
    // December's invoice preview bills December's units, not the late event.
    const december = await worker.reconciler.reconcile({ customerId: "cus_close_a", periodId: "2026-12" });
    expect(december.differences).toEqual([]);
    expect(december.customers[0]?.tiers.find((line) => line.tier === "pro")).toMatchObject({
      units: 11,
      stripe_units: 11,
      invoice_quantity: 11,
      invoice_amount: 0,
    });
    // The big customer: quota included, overage priced exactly; nothing differs.
    const big = await worker.reconciler.reconcile({ customerId: "cus_close_c", periodId: "2026-11" });
    expect(big.differences).toEqual([]);
    expect(big.customers[0]?.tiers.find((line) => line.tier === "pro")).toMatchObject({
      units: 2_000_000,
      included_units: 1_000_000,
      overage_units: 1_000_000,
      amount: 100_000,
      stripe_units: 2_000_000,
    });
    // The worker started hours after Kolkata's November and weeks after October ended: those two
    // closes were late (counted, alerted on); the UTC Novembers closed 10 minutes after the end.
    expect((await worker.metrics.lateCloses.get()).values[0]?.value).toBe(2);
    expect((await worker.metrics.closes.get()).values[0]?.value).toBe(5);
  }, 90_000);
});
