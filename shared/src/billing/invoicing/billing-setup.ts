import { AppError } from "../../runtime/errors";
import type { Logger } from "../../runtime/logger";
import type { CustomerRegistry } from "../customer-registry";
import { type Clock, nextPeriod, periodOf, systemClock } from "../periods";
import type { BillingProvider, SubscriptionSpec } from "../provider/billing-provider";
import { ensureTierBilling, type TierBilling } from "../provider/tier-billing";
import type { TierCatalog } from "../tiers";
import { offsetSpreadMs } from "./stamp-window";

export interface BillingSetupOptions {
  provider: BillingProvider;
  /** False for the dry run: the made-up Stripe ids are used for the run and never stored. */
  live: boolean;
  tiers: TierCatalog;
  customers: CustomerRegistry;
  logger: Logger;
  now?: Clock;
}

/** A customer's Stripe customer and subscription, as billing uses them. */
export interface CustomerLink {
  customer_id: string;
  stripe_customer_id: string;
  stripe_subscription_id: string;
  /** Whether the ids were (re)written to the customer record by this call. */
  stored: boolean;
}

export interface LinkRequest {
  /** Adopt this existing Stripe customer instead of finding or creating one. */
  stripeCustomerId?: string;
  /** Adopt this existing subscription (the tiers' prices are added to it when missing). */
  stripeSubscriptionId?: string;
}

export interface SetupSummary {
  tiers: Array<{ tier: string; meter_id: string; meter_event_name: string; price_id: string }>;
  customers: CustomerLink[];
  failures: Array<{ customer_id: string; error: string }>;
  dry_run: boolean;
}

/**
 * Billing setup, idempotent end to end: each billed tier's meter and price
 * (`ensureTierBilling`), and per customer a Stripe customer and one subscription holding every
 * billed tier's metered price, anchored at the start of the customer's next calendar month in
 * their time zone so Stripe's periods are keymeter's. The ids go onto the customer record.
 */
export class BillingSetup {
  private tierBillings: Promise<Map<string, TierBilling>> | undefined;
  private readonly now: Clock;

  constructor(private readonly options: BillingSetupOptions) {
    this.now = options.now ?? systemClock;
  }

  /** Every billed tier's meter and price (found or created once per instance). */
  tierBilling(): Promise<Map<string, TierBilling>> {
    if (!this.tierBillings) {
      const pending = (async () => {
        const found = new Map<string, TierBilling>();
        for (const tier of this.options.tiers.billed())
          found.set(tier.name, await ensureTierBilling(this.options.provider, tier));
        return found;
      })();
      // A failure (Stripe down) must not stick: the next call tries again.
      pending.catch(() => {
        if (this.tierBillings === pending) this.tierBillings = undefined;
      });
      this.tierBillings = pending;
    }
    return this.tierBillings;
  }

  /** The meter and price of one billed tier; a tier that is not billed is a config error. */
  async tier(name: string): Promise<TierBilling> {
    const billing = (await this.tierBilling()).get(name);
    if (!billing)
      throw new AppError("config_invalid", `tier ${name} is not a billed tier (no stripe section, or free)`);
    return billing;
  }

  /**
   * Links a customer to Stripe: adopts the given ids or the recorded ones, finds or creates
   * the rest, and stores them on the customer record (created, UTC, when there is none).
   */
  async link(customerId: string, request: LinkRequest = {}): Promise<CustomerLink> {
    const { customers, provider, live, logger } = this.options;
    let record = await customers.get(customerId);
    if (!record) {
      await customers.create({ id: customerId }).catch((error: unknown) => {
        // Created by someone else in between: read theirs below.
        if (!(error instanceof AppError && error.code === "conflict")) throw error;
      });
      record = await customers.get(customerId);
      if (!record) throw new AppError("conflict", `customer ${customerId} disappeared while being linked`);
    }
    const prices = [...(await this.tierBilling()).values()].map((billing) => billing.price.id);
    if (prices.length === 0)
      throw new AppError("config_invalid", "no billed tier is configured: nothing to subscribe to");
    const customer = await provider.ensureCustomer({
      customerId,
      ...(record.name ? { name: record.name } : {}),
      stripeCustomerId: request.stripeCustomerId ?? record.stripe_customer_id,
    });
    const sameCustomer = customer.stripeCustomerId === record.stripe_customer_id;
    const subscription = await provider.ensureSubscription({
      customerId,
      stripeCustomerId: customer.stripeCustomerId,
      priceIds: prices,
      // A recorded subscription of another Stripe customer is not adopted.
      stripeSubscriptionId: request.stripeSubscriptionId ?? (sameCustomer ? record.stripe_subscription_id : null),
      ...this.anchorFor(record.time_zone),
    });
    if (subscription.stripeCustomerId !== customer.stripeCustomerId) {
      throw new AppError(
        "bad_request",
        `subscription ${subscription.stripeSubscriptionId} belongs to ${subscription.stripeCustomerId}, not ${customer.stripeCustomerId}`,
      );
    }
    const changed =
      record.stripe_customer_id !== customer.stripeCustomerId ||
      record.stripe_subscription_id !== subscription.stripeSubscriptionId;
    if (live && changed) {
      await customers.update(customerId, {
        stripe_customer_id: customer.stripeCustomerId,
        stripe_subscription_id: subscription.stripeSubscriptionId,
      });
      logger.info(
        {
          customer_id: customerId,
          stripe_customer: customer.stripeCustomerId,
          stripe_subscription: subscription.stripeSubscriptionId,
        },
        "customer linked to stripe",
      );
    }
    return {
      customer_id: customerId,
      stripe_customer_id: customer.stripeCustomerId,
      stripe_subscription_id: subscription.stripeSubscriptionId,
      stored: live && changed,
    };
  }

  /**
   * Tiers, then every customer in the registry (or only `customerIds`). A customer that fails
   * is reported and the others go on.
   */
  async setup(options: { customerIds?: readonly string[] } = {}): Promise<SetupSummary> {
    const billings = await this.tierBilling();
    const ids = options.customerIds ?? (await this.allCustomerIds());
    const linked: CustomerLink[] = [];
    const failures: SetupSummary["failures"] = [];
    for (const id of ids) {
      try {
        linked.push(await this.link(id));
      } catch (error) {
        if (!(error instanceof AppError)) throw error;
        failures.push({ customer_id: id, error: error.message });
        this.options.logger.warn({ customer_id: id, code: error.code, err: error.message }, "customer not linked");
      }
    }
    return {
      tiers: [...billings.values()].map((billing) => ({
        tier: billing.tier,
        meter_id: billing.meter.id,
        meter_event_name: billing.meter.eventName,
        price_id: billing.price.id,
      })),
      customers: linked,
      failures,
      dry_run: !this.options.live,
    };
  }

  /**
   * Where a new subscription's periods start: the customer's next calendar month. A zone whose
   * offset is the same all year also gets Stripe's monthly anchor config (UTC day, clamped to the
   * month's end, and time), so every later period starts at local midnight on the 1st as well;
   * a zone with daylight saving keeps the single anchor (its later periods can be an hour off).
   */
  private anchorFor(timeZone: string): Pick<SubscriptionSpec, "billingCycleAnchor" | "billingCycleAnchorConfig"> {
    const period = nextPeriod(periodOf(this.now(), timeZone), timeZone);
    const next = new Date(period.start);
    if (offsetSpreadMs(period, timeZone) > 0) return { billingCycleAnchor: next };
    return {
      billingCycleAnchor: next,
      billingCycleAnchorConfig: {
        // East of UTC the 1st begins on the previous UTC day: the month's last day, whichever it is.
        dayOfMonth: next.getUTCDate() === 1 ? 1 : 31,
        hour: next.getUTCHours(),
        minute: next.getUTCMinutes(),
        second: next.getUTCSeconds(),
      },
    };
  }

  private async allCustomerIds(): Promise<string[]> {
    const ids: string[] = [];
    for (let offset = 0; ; offset += 1000) {
      const page = await this.options.customers.list({ limit: 1000, offset });
      ids.push(...page.map((customer) => customer.id));
      if (page.length < 1000) return ids;
    }
  }
}
