import { createHash } from "node:crypto";
import Stripe from "stripe";
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
  type MeterFormula,
  type MeterSpec,
  type MeterSummary,
  type MeterSummaryQuery,
  meterEventProblem,
  type PriceSpec,
  type SubscriptionSpec,
} from "./billing-provider";
import { MeterEventLimiter } from "./meter-event-limiter";
import { DEFAULT_RETRY_POLICY, type StripeRetryPolicy, toAppError, withStripeRetry } from "./stripe-retry";

/** Metadata key that ties Stripe customers and subscriptions to keymeter's customer id. */
export const CUSTOMER_METADATA_KEY = "keymeter_customer_id";

export interface StripeBillingOptions {
  /** A client made with `createStripeClient` (SDK retries off: this provider owns retries). */
  stripe: Stripe;
  limiter?: MeterEventLimiter;
  retry?: Partial<StripeRetryPolicy>;
  /** Meter event calls in flight at once (different customers or meters). */
  concurrency?: number;
  logger?: Logger;
  now?: () => number;
}

/**
 * A `stripe` client for the provider: SDK retries off (the provider retries with its own
 * back-off and keeps one idempotency key across attempts); `apiBase` points it elsewhere
 * (stripe-mock, a test fake).
 */
export function createStripeClient(apiKey: string, apiBase?: string): Stripe {
  const config: Stripe.StripeConfig = { maxNetworkRetries: 0, timeout: 30_000 };
  if (apiBase) {
    const url = new URL(apiBase);
    config.host = url.hostname;
    config.protocol = url.protocol === "http:" ? "http" : "https";
    if (url.port) config.port = Number(url.port);
  }
  return new Stripe(apiKey, config);
}

/** The billing provider on Stripe's current API: Billing Meters, meter events, metered prices. */
export class StripeBillingProvider implements BillingProvider {
  private readonly stripe: Stripe;
  private readonly limiter: MeterEventLimiter;
  private readonly retry: StripeRetryPolicy;
  private readonly concurrency: number;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;

  constructor(options: StripeBillingOptions) {
    this.stripe = options.stripe;
    this.limiter = options.limiter ?? new MeterEventLimiter();
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.concurrency = Math.max(1, options.concurrency ?? 16);
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  async ensureMeter(spec: MeterSpec): Promise<BillingMeter> {
    const existing = await this.call("list meters", () =>
      this.stripe.billing.meters.list({ status: "active", limit: 100 }).autoPagingToArray({ limit: 10_000 }),
    );
    let meter = existing.find((candidate) => candidate.event_name === spec.eventName);
    if (!meter) {
      const key = idempotencyKey("meter", spec.eventName, spec.formula);
      meter = await this.call("create meter", () =>
        this.stripe.billing.meters.create(
          {
            display_name: spec.displayName,
            event_name: spec.eventName,
            default_aggregation: { formula: spec.formula },
            customer_mapping: { type: "by_id", event_payload_key: "stripe_customer_id" },
            value_settings: { event_payload_key: "value" },
          },
          { idempotencyKey: key },
        ),
      );
      this.logger?.info({ meter: meter.id, event_name: spec.eventName, formula: spec.formula }, "stripe meter created");
    }
    const formula = meter.default_aggregation.formula as MeterFormula;
    if (formula !== spec.formula) {
      throw new AppError(
        "config_invalid",
        `stripe meter ${meter.id} for event name ${spec.eventName} aggregates with ${formula}, expected ${spec.formula}`,
      );
    }
    return { id: meter.id, eventName: meter.event_name, formula };
  }

  async ensurePrice(spec: PriceSpec): Promise<BillingPrice> {
    if (spec.priceId) {
      const configured = spec.priceId;
      const price = await this.call("retrieve price", () => this.stripe.prices.retrieve(configured));
      return this.checkPrice(price, spec);
    }
    const find = async () =>
      (
        await this.call("list prices", () =>
          this.stripe.prices.list({ lookup_keys: [spec.lookupKey], active: true, limit: 1 }),
        )
      ).data[0];
    const found = await find();
    if (found) return this.checkPrice(found, spec);
    const params: Stripe.PriceCreateParams = {
      currency: spec.currency,
      product_data: { name: spec.productName },
      lookup_key: spec.lookupKey,
      metadata: { keymeter_tier: spec.tier },
      recurring: { interval: "month", usage_type: "metered", meter: spec.meterId },
    };
    if (spec.includedUnits && spec.includedUnits > 0) {
      params.billing_scheme = "tiered";
      params.tiers_mode = "graduated";
      params.tiers = [
        { up_to: spec.includedUnits, unit_amount: 0 },
        { up_to: "inf", unit_amount_decimal: Stripe.Decimal.from(spec.unitAmountDecimal) },
      ];
    } else {
      params.unit_amount_decimal = Stripe.Decimal.from(spec.unitAmountDecimal);
    }
    try {
      const price = await this.call("create price", () =>
        this.stripe.prices.create(params, { idempotencyKey: idempotencyKey("price", JSON.stringify(spec)) }),
      );
      this.logger?.info({ price: price.id, lookup_key: spec.lookupKey, tier: spec.tier }, "stripe price created");
      return this.checkPrice(price, spec);
    } catch (error) {
      // Another worker created it between our look-up and our create: use theirs.
      const raced = error instanceof AppError && error.code === "billing_provider_error" ? await find() : undefined;
      if (raced) return this.checkPrice(raced, spec);
      throw error;
    }
  }

  async ensureCustomer(spec: CustomerSpec): Promise<BillingCustomer> {
    if (spec.stripeCustomerId) {
      const stripeCustomerId = spec.stripeCustomerId;
      const customer = await this.call("retrieve customer", () => this.stripe.customers.retrieve(stripeCustomerId));
      if (customer.deleted) throw new AppError("not_found", `stripe customer ${stripeCustomerId} was deleted`);
      return { customerId: spec.customerId, stripeCustomerId: customer.id };
    }
    // Idempotency keys last 24 hours; the metadata search finds a customer created earlier.
    const query = `metadata['${CUSTOMER_METADATA_KEY}']:'${spec.customerId.replace(/['\\]/g, "\\$&")}'`;
    const found = await this.call("search customers", () => this.stripe.customers.search({ query, limit: 1 }));
    const existing = found.data[0];
    if (existing) return { customerId: spec.customerId, stripeCustomerId: existing.id };
    const params: Stripe.CustomerCreateParams = { metadata: { [CUSTOMER_METADATA_KEY]: spec.customerId } };
    if (spec.name) params.name = spec.name;
    if (spec.email) params.email = spec.email;
    const created = await this.call("create customer", () =>
      this.stripe.customers.create(params, { idempotencyKey: idempotencyKey("customer", spec.customerId) }),
    );
    this.logger?.info({ customer_id: spec.customerId, stripe_customer: created.id }, "stripe customer created");
    return { customerId: spec.customerId, stripeCustomerId: created.id };
  }

  async ensureSubscription(spec: SubscriptionSpec): Promise<BillingSubscription> {
    let subscription: Stripe.Subscription | undefined;
    if (spec.stripeSubscriptionId) {
      const subscriptionId = spec.stripeSubscriptionId;
      subscription = await this.call("retrieve subscription", () => this.stripe.subscriptions.retrieve(subscriptionId));
    } else {
      const listed = await this.call("list subscriptions", () =>
        this.stripe.subscriptions
          .list({ customer: spec.stripeCustomerId, status: "active", limit: 100 })
          .autoPagingToArray({ limit: 1_000 }),
      );
      subscription = listed.find((candidate) => candidate.metadata[CUSTOMER_METADATA_KEY] === spec.customerId);
    }
    if (!subscription) {
      const params: Stripe.SubscriptionCreateParams = {
        customer: spec.stripeCustomerId,
        items: spec.priceIds.map((price) => ({ price })),
        metadata: { [CUSTOMER_METADATA_KEY]: spec.customerId },
      };
      const anchor = spec.billingCycleAnchor ? Math.floor(spec.billingCycleAnchor.getTime() / 1000) : undefined;
      const config = spec.billingCycleAnchorConfig;
      if (config) {
        params.billing_cycle_anchor_config = {
          day_of_month: config.dayOfMonth,
          hour: config.hour,
          minute: config.minute,
          second: config.second,
        };
      } else if (anchor !== undefined && anchor * 1000 > this.now()) params.billing_cycle_anchor = anchor;
      const key = idempotencyKey("subscription", spec.customerId, spec.stripeCustomerId, ...spec.priceIds);
      subscription = await this.call("create subscription", () =>
        this.stripe.subscriptions.create(params, { idempotencyKey: key }),
      );
      this.logger?.info(
        { customer_id: spec.customerId, stripe_subscription: subscription.id },
        "stripe subscription created",
      );
    }
    const subscriptionId = subscription.id;
    const present = new Set(subscription.items.data.map((item) => item.price.id));
    const missing = spec.priceIds.filter((price) => !present.has(price));
    for (const price of missing) {
      await this.call("add subscription item", () =>
        this.stripe.subscriptionItems.create(
          { subscription: subscriptionId, price },
          { idempotencyKey: idempotencyKey("subscription-item", subscriptionId, price) },
        ),
      );
    }
    if (missing.length > 0) {
      subscription = await this.call("retrieve subscription", () => this.stripe.subscriptions.retrieve(subscriptionId));
    }
    return {
      stripeSubscriptionId: subscription.id,
      stripeCustomerId: typeof subscription.customer === "string" ? subscription.customer : subscription.customer.id,
      items: subscription.items.data.map((item) => ({
        itemId: item.id,
        priceId: item.price.id,
        period: { start: fromSeconds(item.current_period_start), end: fromSeconds(item.current_period_end) },
      })),
    };
  }

  async sendMeterEvents(events: readonly MeterEvent[]): Promise<MeterEventOutcome[]> {
    const outcomes: MeterEventOutcome[] = new Array(events.length);
    let next = 0;
    const worker = async () => {
      for (let index = next++; index < events.length; index = next++) {
        const event = events[index] as MeterEvent;
        outcomes[index] = await this.limiter.exclusive(`${event.stripeCustomerId} ${event.eventName}`, () =>
          this.sendOne(event),
        );
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, events.length) }, worker));
    return outcomes;
  }

  private async sendOne(event: MeterEvent): Promise<MeterEventOutcome> {
    const { identifier } = event;
    const problem = meterEventProblem(event, this.now());
    if (problem) {
      return {
        identifier,
        status: "rejected",
        error: new AppError("bad_request", `meter event ${identifier}: ${problem}`),
      };
    }
    const params: Stripe.Billing.MeterEventCreateParams = {
      event_name: event.eventName,
      identifier,
      timestamp: Math.floor(event.timestamp.getTime() / 1000),
      payload: { stripe_customer_id: event.stripeCustomerId, value: String(event.value) },
    };
    try {
      const created = await withStripeRetry(async () => {
        await this.limiter.acquire();
        // Same key on every attempt and every run: a resend replays the first answer.
        return this.stripe.billing.meterEvents.create(params, { idempotencyKey: `keymeter-meter-event-${identifier}` });
      }, this.retry);
      const replayed = created.lastResponse.headers["idempotent-replayed"] === "true";
      return { identifier, status: replayed ? "duplicate" : "accepted" };
    } catch (error) {
      if (isDuplicateIdentifier(error)) return { identifier, status: "duplicate" };
      const appError = toAppError(error, `meter event ${identifier}`);
      const status = appError.retryable ? "failed" : "rejected";
      this.logger?.warn({ identifier, event_name: event.eventName, code: appError.code, status }, appError.message);
      return { identifier, status, error: appError };
    }
  }

  async meterSummaries(query: MeterSummaryQuery): Promise<MeterSummary[]> {
    const params: Stripe.Billing.MeterListEventSummariesParams = {
      customer: query.stripeCustomerId,
      start_time: Math.floor(query.start.getTime() / 1000),
      end_time: Math.floor(query.end.getTime() / 1000),
      limit: 100,
    };
    if (query.groupBy) params.value_grouping_window = query.groupBy;
    const summaries = await this.call("list meter event summaries", () =>
      this.stripe.billing.meters.listEventSummaries(query.meterId, params).autoPagingToArray({ limit: 10_000 }),
    );
    return summaries
      .map((summary) => ({
        start: fromSeconds(summary.start_time),
        end: fromSeconds(summary.end_time),
        value: summary.aggregated_value,
      }))
      .sort((a, b) => a.start.getTime() - b.start.getTime());
  }

  async previewInvoice(stripeCustomerId: string, stripeSubscriptionId: string): Promise<InvoicePreview> {
    const invoice = await this.call("preview invoice", () =>
      this.stripe.invoices.createPreview({ customer: stripeCustomerId, subscription: stripeSubscriptionId }),
    );
    if (invoice.lines.has_more) {
      // A preview's first page holds 10 lines; a subscription has one item per tier.
      throw new AppError(
        "billing_provider_error",
        `invoice preview for ${stripeSubscriptionId} has more lines than one page`,
      );
    }
    const lines = invoice.lines.data;
    return {
      stripeCustomerId,
      stripeSubscriptionId,
      currency: invoice.currency,
      total: invoice.total,
      period: { start: fromSeconds(invoice.period_start), end: fromSeconds(invoice.period_end) },
      lines: lines.map((line) => {
        const price = line.pricing?.price_details?.price;
        return {
          priceId: typeof price === "string" ? price : (price?.id ?? null),
          quantity: line.quantity ?? 0,
          amount: line.amount,
          period: { start: fromSeconds(line.period.start), end: fromSeconds(line.period.end) },
        };
      }),
    };
  }

  /** Runs one Stripe call with retries and maps a final failure onto an AppError. */
  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    try {
      return await withStripeRetry(request, this.retry);
    } catch (error) {
      throw toAppError(error, what);
    }
  }

  private checkPrice(price: Stripe.Price, spec: PriceSpec): BillingPrice {
    const meter = price.recurring?.meter ?? null;
    if (price.recurring?.usage_type !== "metered" || meter !== spec.meterId || price.currency !== spec.currency) {
      throw new AppError(
        "config_invalid",
        `stripe price ${price.id} for tier ${spec.tier} is not a metered ${spec.currency} price on meter ${spec.meterId}`,
      );
    }
    return { id: price.id, lookupKey: price.lookup_key, meterId: meter, currency: price.currency };
  }
}

/**
 * Stripe refuses a second meter event with an identifier it holds: 400 with "An event already
 * exists with identifier ..." (no error code). Since keymeter's identifiers are deterministic,
 * that means the event was delivered before.
 */
function isDuplicateIdentifier(error: unknown): boolean {
  return (
    error instanceof Stripe.errors.StripeInvalidRequestError &&
    error.statusCode === 400 &&
    /already exists with identifier/i.test(error.message)
  );
}

function idempotencyKey(kind: string, ...parts: string[]): string {
  return `keymeter-${kind}-${createHash("sha256").update(parts.join("\n")).digest("hex").slice(0, 32)}`;
}

function fromSeconds(seconds: number): Date {
  return new Date(seconds * 1000);
}
