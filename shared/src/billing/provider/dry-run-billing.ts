import { AppError } from "../../runtime/errors";
import type { Logger } from "../../runtime/logger";
import {
  type BillingCustomer,
  type BillingMeter,
  type BillingPrice,
  type BillingProvider,
  type BillingSubscription,
  type CustomerSpec,
  type InvoicePreview,
  type MeterEvent,
  type MeterEventOutcome,
  type MeterSpec,
  type MeterSummary,
  type MeterSummaryQuery,
  meterEventProblem,
  type PriceSpec,
  type SubscriptionSpec,
} from "./billing-provider";

/** One call the dry run would have made to the billing provider. */
export interface DryRunCall {
  method: keyof BillingProvider;
  args: unknown;
}

const DAY_MS = 86_400_000;

/**
 * The billing provider when no Stripe key is configured: it sends nothing, records and logs
 * what it would send, and answers from what it recorded with Stripe's rules (meter events are
 * checked like Stripe checks them, identifiers are unique for 24 hours, summaries aggregate
 * by the meter's formula), so a billing worker runs end to end without Stripe.
 */
export class DryRunBillingProvider implements BillingProvider {
  readonly calls: DryRunCall[] = [];
  readonly sentEvents: MeterEvent[] = [];
  private readonly meters = new Map<string, BillingMeter>();
  private readonly prices = new Map<string, PriceSpec & { id: string }>();
  private readonly subscriptions = new Map<string, { stripeCustomerId: string; priceIds: string[]; anchor: number }>();
  private readonly identifiers = new Map<string, number>();
  private readonly logger: Logger | undefined;
  private readonly now: () => number;

  constructor(options: { logger?: Logger; now?: () => number } = {}) {
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  async ensureMeter(spec: MeterSpec): Promise<BillingMeter> {
    this.record("ensureMeter", spec);
    const meter = { id: `dry_mtr_${spec.eventName}`, eventName: spec.eventName, formula: spec.formula };
    this.meters.set(meter.id, meter);
    return meter;
  }

  async ensurePrice(spec: PriceSpec): Promise<BillingPrice> {
    this.record("ensurePrice", spec);
    const id = spec.priceId ?? `dry_price_${spec.lookupKey}`;
    this.prices.set(id, { ...spec, id });
    return { id, lookupKey: spec.lookupKey, meterId: spec.meterId, currency: spec.currency };
  }

  async ensureCustomer(spec: CustomerSpec): Promise<BillingCustomer> {
    this.record("ensureCustomer", spec);
    return { customerId: spec.customerId, stripeCustomerId: spec.stripeCustomerId ?? `dry_cus_${spec.customerId}` };
  }

  async ensureSubscription(spec: SubscriptionSpec): Promise<BillingSubscription> {
    this.record("ensureSubscription", spec);
    const id = spec.stripeSubscriptionId ?? `dry_sub_${spec.customerId}`;
    const known = this.subscriptions.get(id);
    const anchor = known?.anchor ?? spec.billingCycleAnchor?.getTime() ?? this.now();
    const priceIds = [...new Set([...(known?.priceIds ?? []), ...spec.priceIds])];
    this.subscriptions.set(id, { stripeCustomerId: spec.stripeCustomerId, priceIds, anchor });
    const period = this.period(anchor);
    return {
      stripeSubscriptionId: id,
      stripeCustomerId: spec.stripeCustomerId,
      items: priceIds.map((priceId) => ({ itemId: `dry_si_${id}_${priceId}`, priceId, period })),
    };
  }

  async sendMeterEvents(events: readonly MeterEvent[]): Promise<MeterEventOutcome[]> {
    return events.map((event) => {
      const now = this.now();
      const problem = meterEventProblem(event, now);
      if (problem) {
        const error = new AppError("bad_request", `meter event ${event.identifier}: ${problem}`);
        return { identifier: event.identifier, status: "rejected", error };
      }
      const seen = this.identifiers.get(event.identifier);
      if (seen !== undefined && now - seen < DAY_MS) return { identifier: event.identifier, status: "duplicate" };
      this.identifiers.set(event.identifier, now);
      this.sentEvents.push(event);
      this.record("sendMeterEvents", event);
      return { identifier: event.identifier, status: "accepted" };
    });
  }

  async meterSummaries(query: MeterSummaryQuery): Promise<MeterSummary[]> {
    const meter = this.meters.get(query.meterId);
    if (!meter) throw new AppError("not_found", `dry run: no meter ${query.meterId}`);
    const step = query.groupBy === "day" ? DAY_MS : query.groupBy === "hour" ? 3_600_000 : Number.POSITIVE_INFINITY;
    const summaries: MeterSummary[] = [];
    for (let from = query.start.getTime(); from < query.end.getTime(); from += step) {
      const to = Math.min(from + step, query.end.getTime());
      summaries.push({
        start: new Date(from),
        end: new Date(to),
        value: this.aggregate(meter, query.stripeCustomerId, from, to),
      });
    }
    return summaries;
  }

  async previewInvoice(stripeCustomerId: string, stripeSubscriptionId: string): Promise<InvoicePreview> {
    const subscription = this.subscriptions.get(stripeSubscriptionId);
    if (!subscription) throw new AppError("not_found", `dry run: no subscription ${stripeSubscriptionId}`);
    const period = this.period(subscription.anchor);
    const lines = subscription.priceIds.map((priceId) => {
      const price = this.prices.get(priceId);
      const meter = price ? this.meters.get(price.meterId) : undefined;
      const quantity = meter
        ? Math.max(0, this.aggregate(meter, stripeCustomerId, period.start.getTime(), period.end.getTime()))
        : 0;
      const billable = Math.max(0, quantity - (price?.includedUnits ?? 0));
      const amount = Math.round(billable * Number(price?.unitAmountDecimal ?? 0));
      return { priceId, quantity, amount, period };
    });
    return {
      stripeCustomerId,
      stripeSubscriptionId,
      currency: this.prices.get(subscription.priceIds[0] ?? "")?.currency ?? "usd",
      total: lines.reduce((sum, line) => sum + line.amount, 0),
      period,
      lines,
    };
  }

  private aggregate(meter: BillingMeter, customer: string, from: number, to: number): number {
    const events = this.sentEvents.filter(
      (event) =>
        event.eventName === meter.eventName &&
        event.stripeCustomerId === customer &&
        event.timestamp.getTime() >= from &&
        event.timestamp.getTime() < to,
    );
    if (meter.formula === "count") return events.length;
    if (meter.formula === "sum") return events.reduce((sum, event) => sum + event.value, 0);
    let latest: MeterEvent | undefined;
    for (const event of events) if (!latest || event.timestamp >= latest.timestamp) latest = event;
    return latest?.value ?? 0;
  }

  /** Monthly periods from the anchor (a dry run has no Stripe subscription to ask). */
  private period(anchor: number): { start: Date; end: Date } {
    const now = this.now();
    const start = new Date(anchor);
    if (now < anchor) return { start: new Date(now), end: start };
    let months = 0;
    for (;;) {
      const end = new Date(anchor);
      end.setUTCMonth(end.getUTCMonth() + months + 1);
      if (now < end.getTime()) {
        const periodStart = new Date(anchor);
        periodStart.setUTCMonth(periodStart.getUTCMonth() + months);
        return { start: periodStart, end };
      }
      months += 1;
    }
  }

  private record(method: keyof BillingProvider, args: unknown): void {
    this.calls.push({ method, args });
    this.logger?.info({ method, args }, "billing dry run: would call the billing provider");
  }
}
