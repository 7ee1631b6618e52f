import { nextPeriod, periodOf } from "@keymeter/shared/billing";
import { afterEach, describe, expect, it } from "vitest";
import { BillingStack } from "../support/billing-stack";

// Stripe's periods are keymeter's: a subscription made by billing setup starts its periods at
// local midnight on the 1st in the customer's zone, month after month (the fake computes
// periods from billing_cycle_anchor / billing_cycle_anchor_config the way Stripe documents).

const LINKED_AT = Date.parse("2026-11-20T12:00:00Z");
let stack: BillingStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe("billing setup: subscription periods are the customer's calendar months", () => {
  it.each(["UTC", "Asia/Kolkata", "America/Bogota", "Australia/Eucla", "Pacific/Kiritimati"])(
    "%s: the first and the next six periods match",
    async (zone) => {
      stack = await BillingStack.start({}, LINKED_AT);
      const s = stack;
      await s.customers.create({ id: "cus_anchor", time_zone: zone });
      const { stripe_subscription_id: subscriptionId } = await s.setup.link("cus_anchor");
      const stripe = s.fake.client();
      let period = periodOf(LINKED_AT, zone);
      for (let month = 0; month < 7; month++) {
        const middle = Math.max(LINKED_AT, period.start) + 86_400_000;
        s.fake.setNow(middle);
        const item = (await stripe.subscriptions.retrieve(subscriptionId)).items.data[0];
        const stripePeriod = {
          start: (item?.current_period_start ?? 0) * 1000,
          end: (item?.current_period_end ?? 0) * 1000,
        };
        // The first period starts when the subscription was made; every one ends where keymeter's month ends.
        expect(stripePeriod, `${zone} ${period.id}`).toEqual({
          start: month === 0 ? LINKED_AT : period.start,
          end: period.end,
        });
        period = nextPeriod(period, zone);
      }
    },
  );

  it("a zone with daylight saving gets its first period right (later ones can be an hour off; see README)", async () => {
    stack = await BillingStack.start({}, LINKED_AT);
    const s = stack;
    await s.customers.create({ id: "cus_paris", time_zone: "Europe/Paris" });
    const { stripe_subscription_id: subscriptionId } = await s.setup.link("cus_paris");
    const subscription = await s.fake.client().subscriptions.retrieve(subscriptionId);
    expect(new Date(subscription.billing_cycle_anchor * 1000).toISOString()).toBe("2026-11-30T23:00:00.000Z");
  });
});
