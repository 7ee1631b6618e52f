import { createHash } from "node:crypto";
import type { BillingPeriod, MeterEvent } from "./billing-provider";

export interface MeterTotal {
  eventName: string;
  stripeCustomerId: string;
  /** The Stripe billing period the total belongs to (the subscription item's period). */
  period: BillingPeriod;
  /** Usage in the period up to `asOf`, from ClickHouse: an absolute total, never a delta. */
  total: number;
  /** When the total was read: later reads carry later timestamps and win. */
  asOf: Date;
}

/**
 * The meter event that reports an absolute period-to-date total to a `last` meter.
 *
 * - The timestamp is `asOf` to the second, held inside the period (at most its last second),
 *   so the total counts in that period's invoice and a month-close total sent after the period
 *   ended still lands in it. A total read before the period started is a caller error.
 * - The identifier is a hash of (event name, customer, period, timestamp, total): a resend of
 *   the same reading is the same event (Stripe refuses the repeat within 24 hours, and after
 *   that a `last` meter still reads the same value), while a newer reading is a new event
 *   whose later timestamp makes it the `last` one. Nothing adds up, so retries, crashes and
 *   re-runs cannot bill twice.
 */
export function meterTotalEvent(total: MeterTotal): MeterEvent {
  const start = Math.floor(total.period.start.getTime() / 1000);
  const end = Math.floor(total.period.end.getTime() / 1000);
  const asOf = Math.floor(total.asOf.getTime() / 1000);
  if (!Number.isSafeInteger(total.total) || total.total < 0) {
    throw new RangeError(`a meter total must be a whole number >= 0, got ${total.total}`);
  }
  if (asOf < start) throw new RangeError("the total was read before its period started");
  const timestamp = Math.min(asOf, end - 1);
  const digest = createHash("sha256")
    .update([total.eventName, total.stripeCustomerId, start, timestamp, total.total].join("\n"))
    .digest("base64url")
    .slice(0, 40);
  return {
    eventName: total.eventName,
    stripeCustomerId: total.stripeCustomerId,
    value: total.total,
    timestamp: new Date(timestamp * 1000),
    identifier: `kmt_${digest}`,
  };
}
