import type { CustomerRecord } from "@keymeter/shared/billing";
import type { BillingSetup } from "@keymeter/shared/billing/invoicing";
import { AppError, type Logger } from "@keymeter/shared/runtime";

/**
 * The Stripe customer id to send a customer's meter events to: the one on the record, or,
 * with link-on-demand, one found or created now (stored on the record when live; the dry run
 * makes one up each time and stores nothing). Undefined: not billable yet.
 */
export class StripeCustomers {
  constructor(
    private readonly options: { setup: BillingSetup; live: boolean; linkOnDemand: boolean; logger: Logger },
  ) {}

  async resolve(customerId: string, record: CustomerRecord | undefined): Promise<string | undefined> {
    if (record?.stripe_customer_id && record.stripe_subscription_id) return record.stripe_customer_id;
    if (!this.options.linkOnDemand) return undefined;
    try {
      return (await this.options.setup.link(customerId)).stripe_customer_id;
    } catch (error) {
      // One customer that cannot be linked must not stop the others; it shows as unlinked.
      if (!(error instanceof AppError) || error.code === "config_invalid") throw error;
      this.options.logger.warn(
        { customer_id: customerId, code: error.code, err: error.message },
        "could not link customer to stripe",
      );
      return undefined;
    }
  }
}
