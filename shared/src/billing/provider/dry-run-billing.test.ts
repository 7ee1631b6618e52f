import { describe, expect, it } from "vitest";
import { loadTiers } from "../tiers";
import { DryRunBillingProvider } from "./dry-run-billing";
import { meterTotalEvent } from "./meter-total";
import { ensureTierBilling } from "./tier-billing";

describe("DryRunBillingProvider", () => {
  it("records what it would send and answers like Stripe from it, without a Stripe key", async () => {
    const now = Date.parse("2026-11-15T12:00:00Z");
    const provider = new DryRunBillingProvider({ now: () => now });
    const pro = loadTiers().get("pro");
    if (!pro) throw new Error("no pro tier");
    const billing = await ensureTierBilling(provider, pro);
    const customer = await provider.ensureCustomer({ customerId: "acme" });
    const subscription = await provider.ensureSubscription({
      customerId: "acme",
      stripeCustomerId: customer.stripeCustomerId,
      priceIds: [billing.price.id],
      billingCycleAnchor: new Date("2026-11-01T00:00:00Z"),
    });
    const period = subscription.items[0]?.period;
    if (!period) throw new Error("no item");
    const reading = (total: number, minutes: number) =>
      meterTotalEvent({
        eventName: billing.meter.eventName,
        stripeCustomerId: customer.stripeCustomerId,
        period,
        total,
        asOf: new Date(now - minutes * 60_000),
      });
    const outcomes = await provider.sendMeterEvents([
      reading(1_000_500, 30),
      reading(1_000_900, 10),
      reading(1_000_500, 30),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(["accepted", "accepted", "duplicate"]);
    const rejected = await provider.sendMeterEvents([{ ...reading(1, 1), value: 0.5 }]);
    expect(rejected[0]?.status).toBe("rejected");
    const preview = await provider.previewInvoice(customer.stripeCustomerId, subscription.stripeSubscriptionId);
    expect(preview.lines[0]).toMatchObject({ quantity: 1_000_900, amount: 90 });
    const summaries = await provider.meterSummaries({
      stripeCustomerId: customer.stripeCustomerId,
      meterId: billing.meter.id,
      start: period.start,
      end: period.end,
    });
    expect(summaries.map((summary) => summary.value)).toEqual([1_000_900]);
    expect(provider.calls.map((call) => call.method)).toEqual([
      "ensureMeter",
      "ensurePrice",
      "ensureCustomer",
      "ensureSubscription",
      "sendMeterEvents",
      "sendMeterEvents",
    ]);
  });
});
