import type { Tier } from "../tiers";

/** What an invoice line for one tier should say, from ClickHouse's units. */
export interface ExpectedLine {
  tier: string;
  units: number;
  /** Units billed at 0 (the tier's monthly quota; 0 for an unlimited tier). */
  included_units: number;
  overage_units: number;
  /** Minor units of `currency`; null when the tier names an existing price without `unit_amount_decimal`. */
  amount: number | null;
  currency: string;
}

/**
 * The line for `units` of a billed tier, priced like the graduated price billing setup creates
 * (the quota at 0, then `unit_amount_decimal` per unit), computed exactly in decimal and
 * rounded half up to a minor unit, as Stripe rounds a line.
 */
export function expectedLine(tier: Tier, units: number): ExpectedLine {
  const included = tier.monthly_quota ?? 0;
  const overage = Math.max(0, units - included);
  const decimal = tier.stripe?.unit_amount_decimal;
  return {
    tier: tier.name,
    units,
    included_units: included,
    overage_units: overage,
    amount: decimal === undefined ? null : multiplyDecimal(overage, decimal),
    currency: tier.stripe?.currency ?? "usd",
  };
}

/** `units` × a decimal string like "0.1", rounded half up to a whole number, without floating point. */
export function multiplyDecimal(units: number, decimal: string): number {
  const [whole = "0", fraction = ""] = decimal.split(".");
  const scale = 10n ** BigInt(fraction.length);
  const numerator = BigInt(units) * BigInt(`${whole}${fraction}`);
  return Number((numerator * 2n + scale) / (2n * scale));
}
