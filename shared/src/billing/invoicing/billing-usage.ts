import { type ClickHouseClient, quoteString, toDateTime } from "../../stores/clickhouse";
import { periodUnitsQueries } from "../period-units-sql";
import type { Period } from "../periods";
import { periodKey } from "../usage-reader";

const HOUR_MS = 3_600_000;
const at = (ms: number) => `toDateTime(${quoteString(toDateTime(ms))}, 'UTC')`;

/** Units per customer and tier: totals.get(customerId)?.get(tier). */
export type CustomerTierUnits = Map<string, Map<string, number>>;

/**
 * Billable units per (customer, tier) from ClickHouse: what Stripe must bill. Events carry the
 * tier their key had when they were used, so a key moved from pro to enterprise mid-month
 * counts in both, each for its own part. Whole hours come from the hourly rollup (filled by the
 * same INSERT as the raw table, so never behind it); the partial hours at either end of a
 * period whose zone is not a whole number of hours from UTC come from raw events.
 */
export class BillingUsageReader {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  /**
   * Customers with any units in `tiers` between `from` and `to` (rounded out to whole hours):
   * the candidates whose exact periods are then computed from their time zones.
   */
  async customersWithUsage(tiers: readonly string[], from: number, to: number): Promise<Set<string>> {
    const customers = new Set<string>();
    if (tiers.length === 0) return customers;
    const text = await this.text(customersWithUsageQuery(tiers, from, to));
    for (const line of text.split("\n")) if (line !== "") customers.add(unescapeTsv(line));
    return customers;
  }

  /**
   * Units in `tiers` in each of `periods` (distinct bounds: one per time zone in use), for
   * every customer or only `customerIds`: result.get(periodKey(period)).get(customer).get(tier).
   * Zero totals are absent.
   */
  async totals(
    tiers: readonly string[],
    periods: readonly Period[],
    options: { customerIds?: readonly string[] } = {},
  ): Promise<Map<string, CustomerTierUnits>> {
    const { distinct, queries } = billingTotalsQueries(tiers, periods, options.customerIds);
    const result = new Map(distinct.map((period) => [periodKey(period), new Map() as CustomerTierUnits]));
    const add = (period: Period, customer: string, tier: string, units: number) => {
      if (units === 0) return;
      const byCustomer = result.get(periodKey(period));
      if (!byCustomer) return;
      let byTier = byCustomer.get(customer);
      if (!byTier) {
        byTier = new Map();
        byCustomer.set(customer, byTier);
      }
      byTier.set(tier, (byTier.get(tier) ?? 0) + units);
    };
    for (const query of queries) {
      for (const line of (await this.text(query)).split("\n")) {
        if (line === "") continue;
        const [customer = "", tier = "", ...values] = line.split("\t");
        for (const [i, period] of distinct.entries()) {
          add(period, unescapeTsv(customer), unescapeTsv(tier), Number(values[i] ?? 0));
        }
      }
    }
    return result;
  }

  private async text(query: string): Promise<string> {
    const result = await this.clickhouse.query({ query, format: "TabSeparated" });
    return result.text();
  }
}

/** TabSeparated escapes backslash, tab and newline; customer ids rarely hold them, but exactness matters. */
function unescapeTsv(value: string): string {
  if (!value.includes("\\")) return value;
  return value.replace(/\\(.)/g, (_, char: string) =>
    char === "t" ? "\t" : char === "n" ? "\n" : char === "0" ? "\0" : char,
  );
}

/** Customers with units in `tiers` in the whole hours around [from, to) (hourly rollup). */
export function customersWithUsageQuery(tiers: readonly string[], from: number, to: number): string {
  return `SELECT DISTINCT customer_id FROM usage_hourly WHERE tier IN (${tiers.map(quoteString).join(", ")}) AND hour >= ${at(Math.floor(from / HOUR_MS) * HOUR_MS)} AND hour < ${at(Math.ceil(to / HOUR_MS) * HOUR_MS)} AND units > 0`;
}

/**
 * The queries behind `BillingUsageReader.totals`: rows of (customer_id, tier, units in each of
 * `distinct` periods as u0, u1, ... or r0, r1, ...), whole hours from the hourly rollup, then
 * (only if some period starts or ends inside an hour) those partial hours from raw events.
 */
export function billingTotalsQueries(
  tiers: readonly string[],
  periods: readonly Period[],
  customerIds?: readonly string[],
): { distinct: Period[]; queries: string[] } {
  const distinct = [...new Map(periods.map((period) => [periodKey(period), period])).values()];
  if (distinct.length === 0 || tiers.length === 0 || (customerIds && customerIds.length === 0)) {
    return { distinct, queries: [] };
  }
  const filter = [
    `tier IN (${tiers.map(quoteString).join(", ")})`,
    ...(customerIds ? [`customer_id IN (${customerIds.map(quoteString).join(", ")})`] : []),
  ].join(" AND ");
  const { rollup, raw } = periodUnitsQueries(distinct, "customer_id, tier", filter);
  const queries = raw === undefined ? [rollup] : [rollup, raw];
  return { distinct, queries };
}
