import { AppError } from "../../runtime/errors";
import type { Tier } from "../tiers";
import type { BillingMeter, BillingPrice, BillingProvider, MeterSpec, PriceSpec } from "./billing-provider";

/** A billed tier's meter and price in the billing provider. */
export interface TierBilling {
  tier: string;
  meter: BillingMeter;
  price: BillingPrice;
}

/**
 * Finds or creates a billed tier's meter (aggregation `last`: the sync reports month-to-date
 * totals) and its metered price. The price bills the units above the tier's monthly quota
 * (graduated: the quota at 0, then `unit_amount_decimal` each), or every unit for an unlimited
 * tier. Idempotent: a second run finds both by event name and lookup key.
 */
export async function ensureTierBilling(provider: BillingProvider, tier: Tier): Promise<TierBilling> {
  const stripe = tier.stripe;
  if (!stripe) throw new AppError("config_invalid", `tier ${tier.name} has no stripe settings`);
  const meterSpec: MeterSpec = {
    eventName: stripe.meter_event_name,
    displayName: `keymeter ${tier.name} requests (month to date)`,
    formula: "last",
  };
  const meter = await provider.ensureMeter(meterSpec);
  const priceSpec: PriceSpec = {
    tier: tier.name,
    lookupKey: stripe.price_lookup_key ?? `keymeter_${tier.name}`,
    meterId: meter.id,
    productName: `API requests (${tier.name})`,
    currency: stripe.currency ?? "usd",
    unitAmountDecimal: stripe.unit_amount_decimal ?? "0",
    includedUnits: tier.monthly_quota,
  };
  if (stripe.price_id) priceSpec.priceId = stripe.price_id;
  const price = await provider.ensurePrice(priceSpec);
  return { tier: tier.name, meter, price };
}
