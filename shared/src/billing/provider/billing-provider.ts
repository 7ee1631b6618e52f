import type { AppError } from "../../runtime/errors";

/**
 * How a meter aggregates a customer's events over a billing period. keymeter's meters use
 * `last`: the sync sends absolute month-to-date totals, so a resend never adds (see
 * `meterTotalEvent`).
 */
export type MeterFormula = "sum" | "count" | "last";

export interface MeterSpec {
  /** The meter's `event_name`; it identifies the meter (one active meter per event name). */
  eventName: string;
  displayName: string;
  formula: MeterFormula;
}

export interface BillingMeter {
  id: string;
  eventName: string;
  formula: MeterFormula;
}

export interface PriceSpec {
  /** The tier the price bills; recorded on the price as metadata. */
  tier: string;
  /** Finds the price again on every run (Stripe's `lookup_key`). */
  lookupKey: string;
  /** Use this existing price instead of finding or creating one (checked, never changed). */
  priceId?: string;
  meterId: string;
  productName: string;
  /** ISO currency, lower case (`usd`). */
  currency: string;
  /** Price per unit in the currency's minor unit, a decimal string (`"0.1"` = a tenth of a cent). */
  unitAmountDecimal: string;
  /** Units per period billed at 0 before the unit price applies (the tier's quota); null: none. */
  includedUnits: number | null;
}

export interface BillingPrice {
  id: string;
  lookupKey: string | null;
  meterId: string;
  currency: string;
}

export interface CustomerSpec {
  /** keymeter's customer id. */
  customerId: string;
  name?: string;
  email?: string;
  /** The Stripe customer already recorded for this customer, if any. */
  stripeCustomerId?: string | null;
}

export interface BillingCustomer {
  customerId: string;
  stripeCustomerId: string;
}

export interface SubscriptionSpec {
  customerId: string;
  stripeCustomerId: string;
  /** Metered prices the subscription must contain (missing ones are added). */
  priceIds: string[];
  /** The Stripe subscription already recorded for this customer, if any. */
  stripeSubscriptionId?: string | null;
  /**
   * Start of the customer's next calendar month in their time zone, so Stripe's billing periods
   * are keymeter's periods. Only used when the subscription is created.
   */
  billingCycleAnchor?: Date;
  /**
   * Stripe's `billing_cycle_anchor_config`: periods start every month on this UTC day (a day
   * past the month's end means its last day) and time. For a zone with a fixed offset this makes
   * every period start at local midnight on the 1st (Asia/Kolkata: day 31, 18:30), where a
   * single anchor would repeat its own day of month. Used instead of `billingCycleAnchor` by
   * providers that support it; only when the subscription is created.
   */
  billingCycleAnchorConfig?: { dayOfMonth: number; hour: number; minute: number; second: number };
}

export interface BillingPeriod {
  start: Date;
  /** Exclusive. */
  end: Date;
}

export interface BillingSubscription {
  stripeSubscriptionId: string;
  stripeCustomerId: string;
  items: Array<{ itemId: string; priceId: string; period: BillingPeriod }>;
}

/** One meter event as Stripe takes it. */
export interface MeterEvent {
  eventName: string;
  stripeCustomerId: string;
  /** A whole number. */
  value: number;
  /** Event time: decides the billing period it counts in (to the second). */
  timestamp: Date;
  /** Stripe refuses a second event with the same identifier within 24 hours; at most 100 characters. */
  identifier: string;
}

/**
 * What became of one meter event: `accepted`; `duplicate` (delivered before: Stripe replayed an
 * earlier answer for its idempotency key, or refused its identifier as already held); `rejected` (Stripe, or the check before sending,
 * refused it: resending the same event will not help); `failed` (not delivered after the
 * bounded retries: send it again later).
 */
export type MeterEventOutcome =
  | { identifier: string; status: "accepted" | "duplicate" }
  | { identifier: string; status: "rejected" | "failed"; error: AppError };

export interface MeterSummaryQuery {
  stripeCustomerId: string;
  meterId: string;
  /** Inclusive; whole minutes. */
  start: Date;
  /** Exclusive; whole minutes. */
  end: Date;
  groupBy?: "hour" | "day";
}

export interface MeterSummary {
  start: Date;
  end: Date;
  value: number;
}

export interface InvoicePreviewLine {
  priceId: string | null;
  quantity: number;
  /** Minor units. */
  amount: number;
  period: BillingPeriod;
}

export interface InvoicePreview {
  stripeCustomerId: string;
  stripeSubscriptionId: string | null;
  currency: string;
  /** Minor units. */
  total: number;
  period: BillingPeriod;
  lines: InvoicePreviewLine[];
}

/**
 * The billing provider as the billing worker needs it. Every `ensure*` call is idempotent: it
 * finds what an earlier run created (by event name, lookup key, metadata) before creating.
 */
export interface BillingProvider {
  ensureMeter(spec: MeterSpec): Promise<BillingMeter>;
  ensurePrice(spec: PriceSpec): Promise<BillingPrice>;
  ensureCustomer(spec: CustomerSpec): Promise<BillingCustomer>;
  ensureSubscription(spec: SubscriptionSpec): Promise<BillingSubscription>;
  /** Sends meter events; one outcome per event, in the order given. Never throws for one event. */
  sendMeterEvents(events: readonly MeterEvent[]): Promise<MeterEventOutcome[]>;
  /** Stripe's aggregation of a customer's events on a meter, oldest window first. */
  meterSummaries(query: MeterSummaryQuery): Promise<MeterSummary[]>;
  previewInvoice(stripeCustomerId: string, stripeSubscriptionId: string): Promise<InvoicePreview>;
}

const DAY_MS = 86_400_000;

/**
 * Stripe's documented rules for a meter event, checked before sending: a whole value, an
 * identifier of 1..100 characters, a timestamp within the past 35 days and at most 5 minutes
 * ahead of `now`. Returns the problem, or undefined.
 */
export function meterEventProblem(event: MeterEvent, now: number): string | undefined {
  if (!Number.isSafeInteger(event.value)) return `value ${event.value} is not a whole number`;
  if (event.identifier.length === 0 || event.identifier.length > 100) return "identifier must have 1 to 100 characters";
  if (event.eventName.length === 0 || event.eventName.length > 100) return "event name must have 1 to 100 characters";
  const time = event.timestamp.getTime();
  if (!Number.isFinite(time)) return "timestamp is not a date";
  if (time < now - 35 * DAY_MS) return "timestamp is more than 35 days in the past";
  if (time > now + 5 * 60_000) return "timestamp is more than 5 minutes in the future";
  return undefined;
}
