import { AppError } from "../../runtime/errors";
import type { CustomerRecord } from "../customer-record";
import { DEFAULT_TIME_ZONE } from "../customer-record";
import type { CustomerRegistry } from "../customer-registry";
import { type Clock, type Period, periodById, periodOf, previousPeriod, systemClock } from "../periods";
import type { BillingProvider, InvoicePreview } from "../provider/billing-provider";
import type { TierCatalog } from "../tiers";
import { periodKey } from "../usage-reader";
import type { BillingSetup } from "./billing-setup";
import type { BillingState, ClosedPeriod } from "./billing-state";
import type { BillingUsageReader } from "./billing-usage";
import { type ExpectedLine, expectedLine } from "./invoice-expectation";

/** Kinds of difference, each a reason finance looks at the customer. */
export const DIFFERENCE_KINDS = [
  /** Usage in a billed tier, but no Stripe customer or subscription to bill it to. */
  "not_linked",
  /** Stripe's meter total differs from ClickHouse's units (open period: not synced yet). */
  "stripe_total_mismatch",
  /** Usage that arrived after the period was closed: in ClickHouse, not on the invoice. */
  "late_usage",
  /** The period ended more than the grace period ago and was not closed. */
  "not_closed",
  /** The invoice preview's quantity for the tier's price differs from ClickHouse's units. */
  "invoice_quantity_mismatch",
  /** The invoice preview's amount differs from what the tier's price gives for ClickHouse's units. */
  "invoice_amount_mismatch",
  /** The subscription has no item for the tier's price: that usage is not invoiced. */
  "invoice_line_missing",
] as const;
export type DifferenceKind = (typeof DIFFERENCE_KINDS)[number];

export interface Difference {
  customer_id: string;
  period_id: string;
  tier: string | null;
  kind: DifferenceKind;
  expected: number | null;
  actual: number | null;
  message: string;
}

export interface TierReconciliation extends ExpectedLine {
  /** The last total the worker had Stripe accept (open period), or the close's frozen total. */
  sent_units: number | null;
  /** Stripe's meter event summary for the period (null: not asked, or not linked). */
  stripe_units: number | null;
  invoice_quantity: number | null;
  invoice_amount: number | null;
}

export interface CustomerReconciliation {
  customer_id: string;
  period: { id: string; start: string; end: string; time_zone: string };
  state: "open" | "ended" | "closed";
  closed_at: string | null;
  stripe_customer_id: string | null;
  tiers: TierReconciliation[];
  differences: Difference[];
}

export interface ReconciliationReport {
  generated_at: string;
  stripe_checked: boolean;
  customers: CustomerReconciliation[];
  differences: Difference[];
}

export interface ReconcileRequest {
  customerId?: string;
  /** `YYYY-MM` in each customer's zone; the previous (last closed) month when absent. */
  periodId?: string;
  /** Ask Stripe (meter summaries, invoice preview); false compares ClickHouse with the worker's records only. */
  stripe?: boolean;
}

export interface ReconcilerOptions {
  usage: BillingUsageReader;
  state: BillingState;
  customers: CustomerRegistry;
  tiers: TierCatalog;
  provider: BillingProvider;
  setup: BillingSetup;
  /** How long after a period's end Stripe finalizes its invoice (the close must be done by then). */
  closeGraceMs: number;
  now?: Clock;
}

/**
 * Per customer and period: what the invoice should say (units per billed tier, included
 * quota, overage, amount) from ClickHouse, beside what the worker sent, Stripe's meter
 * summaries and the invoice preview; every difference listed.
 */
export class Reconciler {
  private readonly now: Clock;

  constructor(private readonly options: ReconcilerOptions) {
    this.now = options.now ?? systemClock;
  }

  async reconcile(request: ReconcileRequest = {}): Promise<ReconciliationReport> {
    const { usage, customers, tiers } = this.options;
    const billed = tiers.billed().map((tier) => tier.name);
    const now = this.now();
    const periodFor = (timeZone: string): Period => {
      if (request.periodId) {
        try {
          return periodById(request.periodId, timeZone);
        } catch {
          throw new AppError("bad_request", `period must look like 2026-11, got ${request.periodId.slice(0, 32)}`);
        }
      }
      return previousPeriod(periodOf(now, timeZone), timeZone);
    };

    let ids: string[];
    if (request.customerId) ids = [request.customerId];
    else {
      // Every zone's month lies within a day of the UTC month with the same id.
      const utc = periodFor(DEFAULT_TIME_ZONE);
      ids = [...(await usage.customersWithUsage(billed, utc.start - 86_400_000, utc.end + 86_400_000))].sort();
    }
    const records = await customers.getMany(ids);
    const periods = new Map(ids.map((id) => [id, periodFor(records.get(id)?.time_zone ?? DEFAULT_TIME_ZONE)]));
    const totals = await usage.totals(billed, [...periods.values()], { customerIds: ids });

    const report: ReconciliationReport = {
      generated_at: new Date(now).toISOString(),
      stripe_checked: request.stripe !== false,
      customers: [],
      differences: [],
    };
    for (const id of ids) {
      const period = periods.get(id);
      if (!period) continue;
      const units = totals.get(periodKey(period))?.get(id) ?? new Map<string, number>();
      if (!request.customerId && [...units.values()].every((value) => value === 0)) continue;
      const entry = await this.customer(id, records.get(id), period, units, request.stripe !== false);
      report.customers.push(entry);
      report.differences.push(...entry.differences);
    }
    return report;
  }

  private async customer(
    customerId: string,
    record: CustomerRecord | undefined,
    period: Period,
    units: Map<string, number>,
    askStripe: boolean,
  ): Promise<CustomerReconciliation> {
    const { tiers, state, provider, setup, closeGraceMs } = this.options;
    const now = this.now();
    const timeZone = record?.time_zone ?? DEFAULT_TIME_ZONE;
    const closed: ClosedPeriod | undefined = (await state.closed(period.id, [customerId])).get(customerId);
    const differences: Difference[] = [];
    const differ = (
      tier: string | null,
      kind: DifferenceKind,
      expected: number | null,
      actual: number | null,
      message: string,
    ) => differences.push({ customer_id: customerId, period_id: period.id, tier, kind, expected, actual, message });

    const stripeCustomer = record?.stripe_customer_id ?? null;
    const subscription = record?.stripe_subscription_id ?? null;
    const used = [...units.values()].some((value) => value > 0);
    if (used && (!stripeCustomer || !subscription)) {
      differ(
        null,
        "not_linked",
        null,
        null,
        `usage in billed tiers but no Stripe ${stripeCustomer ? "subscription" : "customer"}`,
      );
    }
    const open = now < period.end;
    if (!open && !closed && used && now > period.end + closeGraceMs) {
      differ(
        null,
        "not_closed",
        null,
        null,
        `the period ended ${new Date(period.end).toISOString()} and was not closed`,
      );
    }

    let preview: InvoicePreview | undefined;
    if (askStripe && open && stripeCustomer && subscription) {
      preview = await provider.previewInvoice(stripeCustomer, subscription);
    }
    const lines: TierReconciliation[] = [];
    for (const tier of tiers.billed()) {
      const clickhouseUnits = units.get(tier.name) ?? 0;
      const sent = closed
        ? (closed.totals[tier.name] ?? 0)
        : ((await state.sentTotals(tier.name, period.id, [customerId])).get(customerId) ?? null);
      let stripeUnits: number | null = null;
      if (askStripe && stripeCustomer) {
        const billing = await setup.tier(tier.name);
        const summaries = await provider.meterSummaries({
          stripeCustomerId: stripeCustomer,
          meterId: billing.meter.id,
          start: new Date(floorMinute(period.start)),
          end: new Date(floorMinute(period.end)),
        });
        stripeUnits = summaries.reduce((sum, summary) => sum + summary.value, 0);
      }
      const line: TierReconciliation = {
        ...expectedLine(tier, clickhouseUnits),
        sent_units: sent,
        stripe_units: stripeUnits,
        invoice_quantity: null,
        invoice_amount: null,
      };
      lines.push(line);
      if (closed) {
        const atClose = closed.totals[tier.name] ?? 0;
        if (clickhouseUnits > atClose) {
          differ(
            tier.name,
            "late_usage",
            clickhouseUnits,
            atClose,
            `${clickhouseUnits - atClose} units arrived after the period was closed; not on the invoice`,
          );
        }
        if (stripeUnits !== null && stripeUnits !== atClose) {
          differ(
            tier.name,
            "stripe_total_mismatch",
            atClose,
            stripeUnits,
            "Stripe's meter total differs from the total sent at close",
          );
        }
      } else if (stripeUnits !== null && stripeUnits !== clickhouseUnits) {
        differ(
          tier.name,
          "stripe_total_mismatch",
          clickhouseUnits,
          stripeUnits,
          open
            ? "Stripe is behind ClickHouse (the next sync sends the difference)"
            : "Stripe's meter total differs from ClickHouse",
        );
      }
      if (preview) {
        const billing = await setup.tier(tier.name);
        const invoiceLine = preview.lines.find((candidate) => candidate.priceId === billing.price.id);
        if (!invoiceLine) {
          if (clickhouseUnits > 0)
            differ(
              tier.name,
              "invoice_line_missing",
              clickhouseUnits,
              null,
              `the subscription has no item for price ${billing.price.id}`,
            );
          continue;
        }
        line.invoice_quantity = invoiceLine.quantity;
        line.invoice_amount = invoiceLine.amount;
        if (invoiceLine.quantity !== clickhouseUnits) {
          differ(
            tier.name,
            "invoice_quantity_mismatch",
            clickhouseUnits,
            invoiceLine.quantity,
            "the invoice preview's quantity differs from ClickHouse",
          );
        }
        if (line.amount !== null && invoiceLine.amount !== line.amount) {
          differ(
            tier.name,
            "invoice_amount_mismatch",
            line.amount,
            invoiceLine.amount,
            "the invoice preview's amount differs from the tier's price applied to ClickHouse's units",
          );
        }
      }
    }
    return {
      customer_id: customerId,
      period: {
        id: period.id,
        start: new Date(period.start).toISOString(),
        end: new Date(period.end).toISOString(),
        time_zone: timeZone,
      },
      state: closed ? "closed" : open ? "open" : "ended",
      closed_at: closed ? new Date(closed.closed_at).toISOString() : null,
      stripe_customer_id: stripeCustomer,
      tiers: lines,
      differences,
    };
  }
}

/** Meter summaries take whole minutes; every zone's month starts on a whole minute. */
function floorMinute(ms: number): number {
  return Math.floor(ms / 60_000) * 60_000;
}
