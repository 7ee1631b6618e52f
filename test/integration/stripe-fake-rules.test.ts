import Stripe from "stripe";
import { afterEach, describe, expect, it } from "vitest";
import { services } from "../support/services";
import { StripeFake, type StripeFakeOptions } from "../support/stripe-fake";

// The recording Stripe fake, driven through the real `stripe` package: each of Stripe's meter
// event rules it enforces, its aggregation, and (against stripe-mock) the request shapes used.

const NOW = Date.parse("2026-11-15T12:00:00Z");
const NOW_S = NOW / 1000;
const DAY_S = 86_400;

let fake: StripeFake | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

async function startFake(options: StripeFakeOptions = {}) {
  fake = await StripeFake.start({ startAt: NOW, frozen: true, ...options });
  const stripe = fake.client();
  const lastMeter = await stripe.billing.meters.create({
    display_name: "API requests (month to date)",
    event_name: "api_requests_mtd",
    default_aggregation: { formula: "last" },
    customer_mapping: { type: "by_id", event_payload_key: "stripe_customer_id" },
    value_settings: { event_payload_key: "value" },
  });
  const sumMeter = await stripe.billing.meters.create({
    display_name: "API requests",
    event_name: "api_requests",
    default_aggregation: { formula: "sum" },
  });
  const customer = await stripe.customers.create({ name: "Acme", metadata: { keymeter_customer_id: "acme" } });
  const other = await stripe.customers.create({ name: "Other" });
  return { fake, stripe, lastMeter, sumMeter, customer: customer.id, other: other.id };
}

function event(eventName: string, customer: string, value: string, extra: { identifier?: string; timestamp?: number }) {
  return { event_name: eventName, payload: { stripe_customer_id: customer, value }, ...extra };
}

async function stripeError(promise: Promise<unknown>): Promise<Stripe.errors.StripeError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof Stripe.errors.StripeError) return error;
    throw error;
  }
  throw new Error("expected a Stripe error, the call succeeded");
}

describe("Stripe fake: meter event rules", () => {
  it("refuses a repeated identifier within 24 hours as Stripe does, accepts it after, and replays an idempotency key", async () => {
    const { stripe, customer } = await startFake();
    const first = await stripe.billing.meterEvents.create(
      event("api_requests", customer, "5", { identifier: "evt-1", timestamp: NOW_S }),
    );
    expect(first).toMatchObject({ object: "billing.meter_event", identifier: "evt-1", timestamp: NOW_S });
    expect(first.payload).toEqual({ stripe_customer_id: customer, value: "5" });

    const duplicate = await stripeError(
      stripe.billing.meterEvents.create(
        event("api_requests", customer, "5", { identifier: "evt-1", timestamp: NOW_S }),
      ),
    );
    expect(duplicate).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(duplicate.statusCode).toBe(400);
    expect(duplicate.rawType).toBe("invalid_request_error");
    expect(duplicate.message).toBe("An event already exists with identifier evt-1.");
    expect(duplicate.code).toBeUndefined();
    expect(duplicate.headers?.["stripe-should-retry"]).toBe("false");

    // The same idempotency key replays the first answer instead (a retry after a lost response).
    const keyed = () =>
      stripe.billing.meterEvents.create(
        event("api_requests", customer, "7", { identifier: "evt-2", timestamp: NOW_S }),
        {
          idempotencyKey: "key-evt-2",
        },
      );
    await keyed();
    const replay = await keyed();
    expect(replay.lastResponse.headers["idempotent-replayed"]).toBe("true");
    const reused = await stripeError(
      stripe.billing.meterEvents.create(
        event("api_requests", customer, "8", { identifier: "evt-2", timestamp: NOW_S }),
        {
          idempotencyKey: "key-evt-2",
        },
      ),
    );
    expect(reused.rawType).toBe("idempotency_error");

    fake?.advance(DAY_S * 1000 + 1000);
    await stripe.billing.meterEvents.create(
      event("api_requests", customer, "5", { identifier: "evt-1", timestamp: NOW_S + DAY_S }),
    );
    expect(fake?.meterEvents.map((accepted) => accepted.identifier)).toEqual(["evt-1", "evt-2", "evt-1"]);
    expect(fake?.meterTotal({ customer, eventName: "api_requests", start: NOW_S, end: NOW_S + 2 * DAY_S })).toBe(17);
  });

  it("refuses timestamps more than 35 days back or more than 5 minutes ahead, accepts the edges", async () => {
    const { stripe, customer } = await startFake();
    const send = (timestamp: number) =>
      stripe.billing.meterEvents.create(
        event("api_requests", customer, "1", { timestamp, identifier: `t${timestamp}` }),
      );
    const past = await stripeError(send(NOW_S - 35 * DAY_S - 1));
    expect(past.statusCode).toBe(400);
    expect(past.code).toBe("timestamp_too_far_in_past");
    expect(past.param).toBe("timestamp");
    const future = await stripeError(send(NOW_S + 5 * 60 + 1));
    expect(future.code).toBe("timestamp_in_future");
    await send(NOW_S - 35 * DAY_S);
    await send(NOW_S + 5 * 60);
    expect(fake?.meterEvents).toHaveLength(2);
  });

  it("refuses a value that is not a whole number", async () => {
    const { stripe, customer } = await startFake();
    for (const value of ["1.5", "abc", "1e3", ""]) {
      const error = await stripeError(stripe.billing.meterEvents.create(event("api_requests", customer, value, {})));
      expect(error.statusCode, value).toBe(400);
      expect(error.param, value).toBe("payload[value]");
    }
    await stripe.billing.meterEvents.create(event("api_requests", customer, "-3", {}));
    expect(fake?.meterEvents.map((accepted) => accepted.value)).toEqual([-3]);
  });

  it("answers 429 lock_timeout to a second call overlapping the first for the same customer and meter", async () => {
    const { stripe, customer, other } = await startFake({ meterEventLatencyMs: 150 });
    const results = await Promise.allSettled([
      stripe.billing.meterEvents.create(event("api_requests", customer, "1", { identifier: "a" })),
      stripe.billing.meterEvents.create(event("api_requests", customer, "1", { identifier: "b" })),
      // Another customer on the same meter, and the same customer on another meter, do not overlap.
      stripe.billing.meterEvents.create(event("api_requests", other, "1", { identifier: "c" })),
      stripe.billing.meterEvents.create(event("api_requests_mtd", customer, "1", { identifier: "d" })),
    ]);
    const refused = results.filter((result) => result.status === "rejected");
    expect(refused).toHaveLength(1);
    const reason = (refused[0] as PromiseRejectedResult).reason as Stripe.errors.StripeError;
    expect(reason).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(reason.statusCode).toBe(429);
    expect(reason.code).toBe("lock_timeout");
    expect(reason.headers?.["stripe-should-retry"]).toBe("true");
    expect(fake?.count(429, "lock_timeout")).toBe(1);
    expect(fake?.meterEvents).toHaveLength(3);
  });

  it("answers 429 rate_limit above the configured events per second and admits again as tokens refill", async () => {
    const { stripe, customer } = await startFake({ meterEventsPerSecond: 5 });
    const outcomes: string[] = [];
    for (let index = 0; index < 8; index += 1) {
      try {
        await stripe.billing.meterEvents.create(event("api_requests", customer, "1", { identifier: `r${index}` }));
        outcomes.push("ok");
      } catch (error) {
        outcomes.push((error as Stripe.errors.StripeError).code ?? "?");
      }
    }
    expect(outcomes).toEqual(["ok", "ok", "ok", "ok", "ok", "rate_limit", "rate_limit", "rate_limit"]);
    expect(fake?.count(429, "rate_limit")).toBe(3);
    fake?.advance(400); // 0.4 s at 5/s: two tokens
    await stripe.billing.meterEvents.create(event("api_requests", customer, "1", { identifier: "r8" }));
    await stripe.billing.meterEvents.create(event("api_requests", customer, "1", { identifier: "r9" }));
    const error = await stripeError(
      stripe.billing.meterEvents.create(event("api_requests", customer, "1", { identifier: "r10" })),
    );
    expect(error).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(fake?.meterEvents).toHaveLength(7);
  });
});

describe("Stripe fake: aggregation", () => {
  it("summarises sum meters by adding and last meters by the latest event time, per window", async () => {
    const { stripe, customer, other, lastMeter, sumMeter } = await startFake();
    const day = NOW_S - (NOW_S % DAY_S); // 2026-11-15T00:00Z
    const send = (eventName: string, who: string, value: number, timestamp: number, identifier: string) =>
      stripe.billing.meterEvents.create(event(eventName, who, String(value), { identifier, timestamp }));
    await send("api_requests", customer, 3, day - DAY_S + 60, "s1");
    await send("api_requests", customer, 4, day + 60, "s2");
    await send("api_requests", customer, 5, day + 120, "s3");
    await send("api_requests", other, 100, day + 120, "s4");
    // `last`: sent out of order; the event with the latest timestamp wins, not the last received.
    await send("api_requests_mtd", customer, 40, day + 3600, "l1");
    await send("api_requests_mtd", customer, 90, day + 7200, "l2");
    await send("api_requests_mtd", customer, 70, day + 5400, "l3");
    await send("api_requests_mtd", customer, 20, day - DAY_S + 600, "l4");

    const whole = await stripe.billing.meters.listEventSummaries(sumMeter.id, {
      customer,
      start_time: day - DAY_S,
      end_time: day + DAY_S,
    });
    expect(whole.object).toBe("list");
    expect(whole.data.map((summary) => summary.aggregated_value)).toEqual([12]);
    expect(whole.data[0]).toMatchObject({ object: "billing.meter_event_summary", meter: sumMeter.id });

    const daily = await stripe.billing.meters.listEventSummaries(sumMeter.id, {
      customer,
      start_time: day - DAY_S,
      end_time: day + DAY_S,
      value_grouping_window: "day",
    });
    expect(daily.data.map((summary) => [summary.start_time, summary.aggregated_value])).toEqual([
      [day - DAY_S, 3],
      [day, 9],
    ]);

    const last = await stripe.billing.meters.listEventSummaries(lastMeter.id, {
      customer,
      start_time: day - DAY_S,
      end_time: day + DAY_S,
      value_grouping_window: "day",
    });
    expect(last.data.map((summary) => summary.aggregated_value)).toEqual([20, 90]);
    expect(fake?.meterTotal({ customer, eventName: "api_requests_mtd", start: day, end: day + 6000 })).toBe(70);

    const misaligned = await stripeError(
      stripe.billing.meters.listEventSummaries(sumMeter.id, { customer, start_time: day + 1, end_time: day + DAY_S }),
    );
    expect(misaligned.param).toBe("start_time");
  });

  it("previews the invoice from the meter's aggregation: quantity from `last`, graduated tiers priced", async () => {
    const { stripe, customer, lastMeter } = await startFake();
    const price = await stripe.prices.create({
      currency: "usd",
      product_data: { name: "Pro API requests" },
      lookup_key: "keymeter_pro",
      billing_scheme: "tiered",
      tiers_mode: "graduated",
      tiers: [
        { up_to: 1000, unit_amount: 0 },
        { up_to: "inf", unit_amount_decimal: Stripe.Decimal.from("0.5") },
      ],
      recurring: { interval: "month", usage_type: "metered", meter: lastMeter.id },
    });
    const found = await stripe.prices.list({ lookup_keys: ["keymeter_pro"], active: true });
    expect(found.data.map((candidate) => candidate.id)).toEqual([price.id]);
    expect(found.data[0]?.recurring).toMatchObject({ usage_type: "metered", meter: lastMeter.id });

    const taken = await stripeError(
      stripe.prices.create({
        currency: "usd",
        product_data: { name: "x" },
        lookup_key: "keymeter_pro",
        unit_amount: 1,
        recurring: { interval: "month", usage_type: "metered", meter: lastMeter.id },
      }),
    );
    expect(taken.param).toBe("lookup_key");
    const unmetered = await stripeError(
      stripe.prices.create({
        currency: "usd",
        product_data: { name: "x" },
        unit_amount: 1,
        recurring: { interval: "month", usage_type: "metered" },
      }),
    );
    expect(unmetered.param).toBe("recurring[meter]");

    const anchor = Date.parse("2026-12-01T00:00:00Z") / 1000;
    const subscription = await stripe.subscriptions.create({
      customer,
      items: [{ price: price.id }],
      billing_cycle_anchor: anchor,
    });
    const item = subscription.items.data[0];
    expect(item?.current_period_start).toBe(NOW_S);
    expect(item?.current_period_end).toBe(anchor);

    fake?.advance(3_600_000);
    for (const [value, at] of [
      [500, NOW_S + 600],
      [1_800, NOW_S + 1_800],
      [1_200, NOW_S + 1_200],
    ] as const) {
      await stripe.billing.meterEvents.create(event("api_requests_mtd", customer, String(value), { timestamp: at }));
    }
    // Before the subscription's period: not on this invoice.
    await stripe.billing.meterEvents.create(event("api_requests_mtd", customer, "99999", { timestamp: NOW_S - DAY_S }));

    const preview = await stripe.invoices.createPreview({ customer, subscription: subscription.id });
    expect(preview.lines.data).toHaveLength(1);
    const line = preview.lines.data[0];
    expect(line?.quantity).toBe(1_800);
    expect(line?.amount).toBe(400); // (1,800 - 1,000) x 0.5 cent
    expect(line?.pricing?.price_details?.price).toBe(price.id);
    expect(preview.total).toBe(400);
    expect(preview.period_end).toBe(anchor);
  });
});

describe("the SDK calls billing uses, against stripe-mock (OpenAPI-validated shapes)", () => {
  it("accepts every request the fake is driven with", async (context) => {
    const base = services().stripeApiBase;
    if (!base) {
      context.skip("stripe-mock is not running here (optional service)");
      return;
    }
    const url = new URL(base);
    const stripe = new Stripe("sk_test_123", {
      host: url.hostname,
      port: Number(url.port),
      protocol: "http",
      maxNetworkRetries: 0,
    });
    const meter = await stripe.billing.meters.create({
      display_name: "API requests",
      event_name: "keymeter_api_requests",
      default_aggregation: { formula: "last" },
      customer_mapping: { type: "by_id", event_payload_key: "stripe_customer_id" },
      value_settings: { event_payload_key: "value" },
    });
    await stripe.billing.meters.retrieve(meter.id);
    await stripe.billing.meters.list({ status: "active", limit: 100 });
    await stripe.billing.meterEvents.create(
      {
        event_name: "keymeter_api_requests",
        identifier: "km_1",
        timestamp: NOW_S,
        payload: { stripe_customer_id: "cus_1", value: "12" },
      },
      { idempotencyKey: "km_1" },
    );
    await stripe.billing.meters.listEventSummaries(meter.id, {
      customer: "cus_1",
      start_time: NOW_S - 3600,
      end_time: NOW_S,
      value_grouping_window: "hour",
    });
    await stripe.prices.list({ lookup_keys: ["keymeter_pro"], active: true, limit: 1 });
    await stripe.prices.create({
      currency: "usd",
      product_data: { name: "Pro API requests" },
      lookup_key: "keymeter_pro",
      billing_scheme: "tiered",
      tiers_mode: "graduated",
      tiers: [
        { up_to: 1000, unit_amount: 0 },
        { up_to: "inf", unit_amount_decimal: Stripe.Decimal.from("0.5") },
      ],
      recurring: { interval: "month", usage_type: "metered", meter: meter.id },
      metadata: { keymeter_tier: "pro" },
    });
    await stripe.prices.create({
      currency: "usd",
      product_data: { name: "Enterprise API requests" },
      lookup_key: "keymeter_enterprise",
      unit_amount_decimal: Stripe.Decimal.from("0.05"),
      recurring: { interval: "month", usage_type: "metered", meter: meter.id },
    });
    const customer = await stripe.customers.create({ name: "Acme", metadata: { keymeter_customer_id: "acme" } });
    await stripe.customers.retrieve(customer.id);
    await stripe.customers.search({ query: "metadata['keymeter_customer_id']:'acme'" });
    const subscription = await stripe.subscriptions.create({
      customer: customer.id,
      items: [{ price: "price_1" }],
      billing_cycle_anchor: NOW_S + DAY_S,
      metadata: { keymeter_customer_id: "acme" },
    });
    await stripe.subscriptions.retrieve(subscription.id);
    await stripe.subscriptions.list({ customer: customer.id, status: "active" });
    await stripe.subscriptionItems.create({ subscription: subscription.id, price: "price_2" });
    const preview = await stripe.invoices.createPreview({ customer: customer.id, subscription: subscription.id });
    expect(preview.object).toBe("invoice");
  });
});
