import { loadTiers, type Tier } from "@keymeter/shared/billing";
import {
  createStripeClient,
  ensureTierBilling,
  type MeterEvent,
  MeterEventLimiter,
  meterTotalEvent,
  type StripeBillingOptions,
  StripeBillingProvider,
} from "@keymeter/shared/billing/provider";
import { afterEach, describe, expect, it } from "vitest";
import { StripeFake, type StripeFakeOptions } from "../support/stripe-fake";

// StripeBillingProvider against the recording Stripe fake, through the real `stripe` package.

const NOW = Date.parse("2026-11-15T12:00:00Z");
const DEC_1 = new Date("2026-12-01T00:00:00Z");
const tiers = loadTiers();
function shippedTier(name: string): Tier {
  const tier = tiers.get(name);
  if (!tier) throw new Error(`the shipped tiers lost ${name}`);
  return tier;
}
const pro = shippedTier("pro");
const enterprise = shippedTier("enterprise");

let fake: StripeFake | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function start(fakeOptions: StripeFakeOptions = {}, providerOptions: Partial<StripeBillingOptions> = {}) {
  const started = await StripeFake.start({ startAt: NOW, ...fakeOptions });
  fake = started;
  const provider = new StripeBillingProvider({
    stripe: createStripeClient(started.apiKey, `http://${started.host}:${started.port}`),
    now: () => started.now(),
    ...providerOptions,
  });
  return { fake: started, provider };
}

async function customerWithSubscription(provider: StripeBillingProvider, customerId: string, priceIds: string[]) {
  const customer = await provider.ensureCustomer({ customerId, name: customerId });
  const subscription = await provider.ensureSubscription({
    customerId,
    stripeCustomerId: customer.stripeCustomerId,
    priceIds,
    billingCycleAnchor: DEC_1,
  });
  return { stripeCustomerId: customer.stripeCustomerId, subscription };
}

describe("StripeBillingProvider: setup", () => {
  it("finds or creates each tier's `last` meter and graduated price once, with idempotency keys", async () => {
    const { fake, provider } = await start({ frozen: true });
    const first = await ensureTierBilling(provider, pro);
    const again = await ensureTierBilling(provider, pro);
    expect(again).toEqual(first);
    expect(first.meter).toMatchObject({ eventName: "keymeter_pro_requests", formula: "last" });
    expect(first.price.lookupKey).toBe("keymeter_pro");
    const creates = fake.requests.filter(
      (request) => request.method === "POST" && ["/v1/billing/meters", "/v1/prices"].includes(request.path),
    );
    expect(creates.map((request) => request.path)).toEqual(["/v1/billing/meters", "/v1/prices"]);
    expect(creates.every((request) => request.idempotencyKey?.startsWith("keymeter-"))).toBe(true);
    expect(creates[1]?.params).toMatchObject({
      billing_scheme: "tiered",
      tiers_mode: "graduated",
      tiers: [
        { up_to: "1000000", unit_amount: "0" },
        { up_to: "inf", unit_amount_decimal: "0.1" },
      ],
      recurring: { usage_type: "metered", meter: first.meter.id, interval: "month" },
    });

    const unlimited = await ensureTierBilling(provider, enterprise);
    expect(unlimited.meter.id).not.toBe(first.meter.id);
    expect(fake.requestsTo("POST", "/v1/prices").at(-1)?.params).toMatchObject({ unit_amount_decimal: "0.05" });
  });

  it("refuses a meter with another aggregation or a configured price that is not metered on the tier's meter", async () => {
    const { fake, provider } = await start({ frozen: true });
    const stripe = fake.client();
    await stripe.billing.meters.create({
      display_name: "old",
      event_name: "keymeter_pro_requests",
      default_aggregation: { formula: "sum" },
    });
    await expect(ensureTierBilling(provider, pro)).rejects.toMatchObject({
      code: "config_invalid",
      message: expect.stringContaining("aggregates with sum, expected last"),
    });
    const meter = await provider.ensureMeter({ eventName: "other_meter", displayName: "o", formula: "last" });
    const licensed = await stripe.prices.create({
      currency: "usd",
      product_data: { name: "seat" },
      unit_amount: 100,
      recurring: { interval: "month" },
    });
    const spec = { tier: "team", lookupKey: "k", meterId: meter.id, productName: "p", currency: "usd" };
    await expect(
      provider.ensurePrice({ ...spec, priceId: licensed.id, unitAmountDecimal: "1", includedUnits: null }),
    ).rejects.toMatchObject({ code: "config_invalid" });
  });

  it("finds the customer and subscription an earlier run created, and adds a missing tier price", async () => {
    const { fake, provider } = await start({ frozen: true });
    const proBilling = await ensureTierBilling(provider, pro);
    const enterpriseBilling = await ensureTierBilling(provider, enterprise);
    const first = await customerWithSubscription(provider, "acme", [proBilling.price.id]);
    // A re-run that lost the recorded ids finds both again (metadata search, subscription list).
    const second = await customerWithSubscription(provider, "acme", [proBilling.price.id]);
    expect(second.stripeCustomerId).toBe(first.stripeCustomerId);
    expect(second.subscription.stripeSubscriptionId).toBe(first.subscription.stripeSubscriptionId);
    expect(fake.requestsTo("POST", "/v1/customers")).toHaveLength(1);
    expect(fake.requestsTo("POST", "/v1/subscriptions")).toHaveLength(1);
    expect(first.subscription.items[0]?.period).toEqual({ start: new Date(NOW), end: DEC_1 });

    const both = await provider.ensureSubscription({
      customerId: "acme",
      stripeCustomerId: first.stripeCustomerId,
      stripeSubscriptionId: first.subscription.stripeSubscriptionId,
      priceIds: [proBilling.price.id, enterpriseBilling.price.id],
    });
    expect(both.items.map((item) => item.priceId)).toEqual([proBilling.price.id, enterpriseBilling.price.id]);
  });
});

describe("StripeBillingProvider: month-to-date totals to a `last` meter", () => {
  it("converges: resends, a crashed run's stale snapshot and re-runs never add up; the invoice bills the latest total", async () => {
    const { fake, provider } = await start({ frozen: true });
    const billing = await ensureTierBilling(provider, pro);
    const { stripeCustomerId, subscription } = await customerWithSubscription(provider, "acme", [billing.price.id]);
    const period = subscription.items[0]?.period;
    if (!period) throw new Error("no subscription item");
    const reading = (total: number, minutes: number) =>
      meterTotalEvent({
        eventName: billing.meter.eventName,
        stripeCustomerId,
        period,
        total,
        asOf: new Date(NOW + minutes * 60_000),
      });

    fake.advance(10 * 60_000);
    const early = reading(400_000, 5);
    expect(await provider.sendMeterEvents([early])).toEqual([{ identifier: early.identifier, status: "accepted" }]);
    fake.advance(60 * 60_000);
    const later = reading(1_250_000, 65);
    // The sync's retry after a lost answer, and a re-run of the same reading: delivered once.
    const outcomes = await provider.sendMeterEvents([later, later]);
    expect(outcomes.map((outcome) => outcome.status).sort()).toEqual(["accepted", "duplicate"]);
    // A worker that crashed holding the early snapshot sends it again: older timestamp, no effect.
    expect(await provider.sendMeterEvents([early])).toEqual([{ identifier: early.identifier, status: "duplicate" }]);
    // Another deployment (another idempotency key) sent this reading first: Stripe refuses ours.
    const elsewhere = reading(1_250_000, 66);
    await fake.client().billing.meterEvents.create({
      event_name: elsewhere.eventName,
      identifier: elsewhere.identifier,
      timestamp: elsewhere.timestamp.getTime() / 1000,
      payload: { stripe_customer_id: stripeCustomerId, value: String(elsewhere.value) },
    });
    expect(await provider.sendMeterEvents([elsewhere])).toEqual([
      { identifier: elsewhere.identifier, status: "duplicate" },
    ]);
    expect(fake.count(400)).toBe(1);
    fake.advance(2 * 86_400_000); // beyond Stripe's 24 h identifier memory
    expect((await provider.sendMeterEvents([early]))[0]?.status).toBe("accepted");

    const [summary] = await provider.meterSummaries({
      stripeCustomerId,
      meterId: billing.meter.id,
      start: period.start,
      end: period.end,
    });
    expect(summary?.value).toBe(1_250_000);
    const preview = await provider.previewInvoice(stripeCustomerId, subscription.stripeSubscriptionId);
    expect(preview.lines).toEqual([
      expect.objectContaining({ priceId: billing.price.id, quantity: 1_250_000, amount: 25_000 }),
    ]);
    expect(preview.total).toBe(25_000); // 250,000 requests over the quota at 0.1 cent
  });

  it("month close: the final total read after the period ended still lands in that period", async () => {
    const { fake, provider } = await start({ frozen: true });
    const billing = await ensureTierBilling(provider, enterprise);
    const { stripeCustomerId, subscription } = await customerWithSubscription(provider, "acme", [billing.price.id]);
    const november = subscription.items[0]?.period;
    if (!november) throw new Error("no subscription item");
    fake.setNow(DEC_1.getTime() + 20 * 60_000); // 00:20 on December 1st: November is over
    const final = meterTotalEvent({
      eventName: billing.meter.eventName,
      stripeCustomerId,
      period: november,
      total: 777,
      asOf: new Date(DEC_1.getTime() + 15 * 60_000),
    });
    expect(final.timestamp.getTime()).toBe(DEC_1.getTime() - 1000);
    const december = meterTotalEvent({
      eventName: billing.meter.eventName,
      stripeCustomerId,
      period: { start: DEC_1, end: new Date("2027-01-01T00:00:00Z") },
      total: 12,
      asOf: new Date(DEC_1.getTime() + 15 * 60_000),
    });
    expect((await provider.sendMeterEvents([final, december])).map((outcome) => outcome.status)).toEqual([
      "accepted",
      "accepted",
    ]);
    const total = (start: Date, end: Date) =>
      fake.meterTotal({
        customer: stripeCustomerId,
        eventName: billing.meter.eventName,
        start: start.getTime() / 1000,
        end: end.getTime() / 1000,
      });
    expect(total(november.start, november.end)).toBe(777);
    expect(total(DEC_1, new Date("2027-01-01T00:00:00Z"))).toBe(12);
    const preview = await provider.previewInvoice(stripeCustomerId, subscription.stripeSubscriptionId);
    expect(preview.period.start).toEqual(DEC_1);
    expect(preview.lines[0]?.quantity).toBe(12);
  });
});

describe("StripeBillingProvider: limits, retries, errors", () => {
  async function customers(provider: StripeBillingProvider, count: number) {
    const billing = await ensureTierBilling(provider, enterprise);
    const ids: string[] = [];
    for (let index = 0; index < count; index += 1) {
      ids.push((await provider.ensureCustomer({ customerId: `c${index}` })).stripeCustomerId);
    }
    return { billing, ids };
  }

  function events(eventName: string, customerIds: string[], perCustomer: number, at: number): MeterEvent[] {
    return customerIds.flatMap((stripeCustomerId, customer) =>
      Array.from({ length: perCustomer }, (_, index) => ({
        eventName,
        stripeCustomerId,
        value: index + 1,
        timestamp: new Date(at - (perCustomer - index) * 1000),
        identifier: `e-${customer}-${index}`,
      })),
    );
  }

  it("stays under Stripe's rate and one call per customer and meter: no 429 at all", async () => {
    const { fake, provider } = await start(
      { meterEventsPerSecond: 60, meterEventLatencyMs: 5 },
      { limiter: new MeterEventLimiter({ eventsPerSecond: 50, burst: 5 }), concurrency: 8 },
    );
    const { billing, ids } = await customers(provider, 4);
    const batch = events(billing.meter.eventName, ids, 15, fake.now());
    const outcomes = await provider.sendMeterEvents(batch);
    expect(outcomes.every((outcome) => outcome.status === "accepted")).toBe(true);
    expect(fake.count(429)).toBe(0);
    expect(new Set(fake.meterEvents.map((event) => event.identifier))).toEqual(
      new Set(batch.map((event) => event.identifier)),
    );
  });

  it("backs off on 429 with jitter and delivers every event exactly once when Stripe's limit is lower than ours", async () => {
    const { fake, provider } = await start(
      { meterEventsPerSecond: 40 },
      {
        limiter: new MeterEventLimiter({ eventsPerSecond: 1000 }),
        retry: { maxAttempts: 20, baseDelayMs: 20, maxDelayMs: 200 },
      },
    );
    const { billing, ids } = await customers(provider, 10);
    const batch = events(billing.meter.eventName, ids, 8, fake.now());
    const outcomes = await provider.sendMeterEvents(batch);
    expect(outcomes.filter((outcome) => outcome.status !== "accepted")).toEqual([]);
    expect(fake.count(429, "rate_limit")).toBeGreaterThan(0);
    expect(fake.meterEvents.map((event) => event.identifier).sort()).toEqual(
      batch.map((event) => event.identifier).sort(),
    );
  });

  it("honours Retry-After, stops after the bounded attempts, and reports the event as failed (retryable)", async () => {
    const delays: number[] = [];
    const { fake, provider } = await start(
      { frozen: true, meterEventsPerSecond: 1, retryAfterSeconds: 2 },
      {
        retry: {
          maxAttempts: 3,
          random: () => 0.5,
          sleep: async (ms) => {
            delays.push(ms);
          },
        },
      },
    );
    const { billing, ids } = await customers(provider, 1);
    const [first, second] = events(billing.meter.eventName, ids, 2, fake.now());
    if (!first || !second) throw new Error("no events");
    const outcomes = await provider.sendMeterEvents([first, second]);
    expect(outcomes[0]?.status).toBe("accepted");
    expect(outcomes[1]).toMatchObject({ status: "failed", error: { code: "rate_limited", retryable: true } });
    expect(delays).toEqual([2000, 2000]);
    expect(fake.count(429, "rate_limit")).toBe(3);
  });

  it("backs off exponentially with full jitter when Stripe sends no Retry-After", async () => {
    const delays: number[] = [];
    const { fake, provider } = await start(
      { frozen: true, meterEventsPerSecond: 1 },
      {
        retry: {
          maxAttempts: 4,
          baseDelayMs: 100,
          random: () => 0.5,
          sleep: async (ms) => {
            delays.push(ms);
            if (delays.length === 3) fake?.advance(1000); // a token at last
          },
        },
      },
    );
    const { billing, ids } = await customers(provider, 1);
    const outcomes = await provider.sendMeterEvents(events(billing.meter.eventName, ids, 2, fake.now()));
    expect(outcomes.map((outcome) => outcome.status)).toEqual(["accepted", "accepted"]);
    expect(delays).toEqual([50, 100, 200]);
  });

  it("refuses what Stripe would refuse, before or after sending, with the project's error codes", async () => {
    const { fake, provider } = await start({ frozen: true });
    const { billing, ids } = await customers(provider, 1);
    const base = { eventName: billing.meter.eventName, stripeCustomerId: ids[0] ?? "", timestamp: new Date(NOW) };
    const outcomes = await provider.sendMeterEvents([
      { ...base, value: 1.5, identifier: "fraction" },
      { ...base, value: 1, timestamp: new Date(NOW - 36 * 86_400_000), identifier: "too-old" },
      { ...base, value: 1, stripeCustomerId: "cus_unknown", identifier: "unknown-customer" },
    ]);
    expect(outcomes.map((outcome) => [outcome.status, "error" in outcome ? outcome.error.code : ""])).toEqual([
      ["rejected", "bad_request"],
      ["rejected", "bad_request"],
      ["rejected", "billing_provider_error"],
    ]);
    expect(fake.requestsTo("POST", "/v1/billing/meter_events")).toHaveLength(1);

    const wrongKey = new StripeBillingProvider({
      stripe: createStripeClient("sk_live_wrong", `http://${fake.host}:${fake.port}`),
    });
    await expect(wrongKey.ensureCustomer({ customerId: "x" })).rejects.toMatchObject({
      code: "config_invalid",
      retryable: false,
    });
    await expect(provider.ensureCustomer({ customerId: "x", stripeCustomerId: "cus_missing" })).rejects.toMatchObject({
      code: "not_found",
    });
  });
});
