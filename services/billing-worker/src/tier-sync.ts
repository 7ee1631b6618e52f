import {
  type Clock,
  type CustomerRegistry,
  DEFAULT_TIME_ZONE,
  type Period,
  periodKey,
  periodOf,
  type TierCatalog,
} from "@keymeter/shared/billing";
import {
  type BillingAuditLog,
  type BillingAuditRow,
  type BillingSetup,
  type BillingState,
  type BillingUsageReader,
  stampWindow,
} from "@keymeter/shared/billing/invoicing";
import {
  type BillingProvider,
  type MeterEvent,
  type MeterEventOutcome,
  meterTotalEvent,
} from "@keymeter/shared/billing/provider";
import { AppError, type Logger } from "@keymeter/shared/runtime";
import type { BillingWorkerMetrics } from "./metrics";
import type { StripeCustomers } from "./stripe-customers";

const DAY_MS = 86_400_000;
/**
 * Readings of an open period are stamped at most this close to its end, so the month close
 * (stamped at the last second) always carries the latest timestamp and wins on a `last` meter.
 */
const CLOSE_MARGIN_MS = 2_000;

export interface BillingDeps {
  usage: BillingUsageReader;
  state: BillingState;
  audit: BillingAuditLog;
  provider: BillingProvider;
  live: boolean;
  setup: BillingSetup;
  customers: CustomerRegistry;
  stripeCustomers: StripeCustomers;
  tiers: TierCatalog;
  logger: Logger;
  metrics: BillingWorkerMetrics;
  now: Clock;
  batchSize: number;
}

export interface SyncResult {
  tier: string;
  customers: number;
  sent: number;
  unchanged: number;
  unlinked: number;
  /** Customers in a daylight-saving zone during their month's first hour(s): sent once Stripe's period surely began. */
  waiting: number;
  rejected: number;
  failed: number;
}

export interface Pending {
  customerId: string;
  period: Period;
  event: MeterEvent;
}

/**
 * One run of one tier's sync: the month-to-date units of every customer with usage in the tier
 * this period (each in its own time zone; events carry the tier they were used under), sent as
 * absolute totals to the tier's `last` meter. Totals Stripe already holds are skipped; each batch's
 * accepted totals are recorded before the next, so a run that crashed resumes where it stopped,
 * and since the customers come from ClickHouse every run, none is missed.
 */
export class TierSync {
  constructor(private readonly deps: BillingDeps) {}

  async run(tierName: string, runId: string): Promise<SyncResult> {
    const { usage, state, setup, customers, tiers, logger, metrics, stripeCustomers } = this.deps;
    const tier = tiers.get(tierName);
    if (!tier || !tiers.billed().some((billed) => billed.name === tierName)) {
      throw new AppError("config_invalid", `tier ${tierName} is not a billed tier in the tiers file`);
    }
    const billing = await setup.tier(tierName);
    const now = this.deps.now();
    const utcMonth = periodOf(now, DEFAULT_TIME_ZONE);
    // Every zone's current month starts within a day of the UTC month's start.
    const candidates = [...(await usage.customersWithUsage([tierName], utcMonth.start - DAY_MS, now + DAY_MS))];
    const records = await customers.getMany(candidates);
    const periodOfZone = memoByZone((timeZone) => periodOf(now, timeZone));
    const windowOfZone = memoByZone((timeZone) => stampWindow(periodOfZone(timeZone), timeZone));
    const periodOfCustomer = new Map(
      candidates.map((id) => [id, periodOfZone(records.get(id)?.time_zone ?? DEFAULT_TIME_ZONE)]),
    );
    const totals = await usage.totals([tierName], [...periodOfCustomer.values()]);

    const result: SyncResult = {
      tier: tierName,
      customers: 0,
      sent: 0,
      unchanged: 0,
      unlinked: 0,
      waiting: 0,
      rejected: 0,
      failed: 0,
    };
    // Group by period id: the sent-totals hash is per tier and period.
    const byPeriod = new Map<string, Array<{ id: string; period: Period; units: number }>>();
    for (const [id, period] of periodOfCustomer) {
      const units = totals.get(periodKey(period))?.get(id)?.get(tierName) ?? 0;
      if (units === 0) continue;
      result.customers += 1;
      const group = byPeriod.get(period.id) ?? [];
      group.push({ id, period, units });
      byPeriod.set(period.id, group);
    }
    const pending: Pending[] = [];
    for (const [periodId, group] of byPeriod) {
      const sent = await state.sentTotals(
        tierName,
        periodId,
        group.map((entry) => entry.id),
      );
      for (const { id, period, units } of group) {
        if (sent.get(id) === units) {
          result.unchanged += 1;
          continue;
        }
        const stripeCustomerId = await stripeCustomers.resolve(id, records.get(id));
        if (!stripeCustomerId) {
          result.unlinked += 1;
          continue;
        }
        // Timestamps stay where Stripe's period for this month surely is (see stampWindow).
        const window = windowOfZone(records.get(id)?.time_zone ?? DEFAULT_TIME_ZONE);
        if (now < window.start) {
          result.waiting += 1;
          continue;
        }
        const asOf = Math.min(now, window.end - CLOSE_MARGIN_MS);
        const event = meterTotalEvent({
          eventName: billing.meter.eventName,
          stripeCustomerId,
          period: { start: new Date(window.start), end: new Date(window.end) },
          total: units,
          asOf: new Date(asOf),
        });
        pending.push({ customerId: id, period, event });
      }
    }
    metrics.unchanged.inc({ tier: tierName }, result.unchanged);
    metrics.unlinked.set({ tier: tierName }, result.unlinked);

    await sendInBatches(this.deps, tierName, "sync", runId, pending, (outcome, done) => {
      result.sent += outcome.delivered;
      result.rejected += outcome.rejected;
      result.failed += outcome.failed;
      logger.debug({ run_id: runId, tier: tierName, done, of: pending.length }, "sync progress");
    });
    logger.info({ run_id: runId, ...result }, "tier synced");
    if (result.failed > 0) {
      // Retried by BullMQ; the retry sends only what Stripe did not take.
      throw new AppError(
        "service_unavailable",
        `${result.failed} meter events for tier ${tierName} were not delivered`,
        {
          retryable: true,
        },
      );
    }
    return result;
  }
}

/** One computation per time zone in a run (Intl is slow; 10,000 customers share a handful of zones). */
export function memoByZone<T>(compute: (timeZone: string) => T): (timeZone: string) => T {
  const cache = new Map<string, T>();
  return (timeZone) => {
    let value = cache.get(timeZone);
    if (value === undefined) {
      value = compute(timeZone);
      cache.set(timeZone, value);
    }
    return value;
  };
}

export interface BatchOutcome {
  delivered: number;
  rejected: number;
  failed: number;
  deliveredCustomers: Set<string>;
}

/**
 * Sends `pending` in batches of `batchSize`. Each batch's outcomes are recorded (audit, then
 * the delivered totals in Redis) only after Stripe answered, while the next batch is already
 * being sent: at most one recording in flight, so a crash re-sends at most two batches.
 */
export async function sendInBatches(
  deps: Pick<BillingDeps, "provider" | "state" | "audit" | "metrics" | "logger" | "live" | "now" | "batchSize">,
  tier: string,
  kind: "sync" | "close",
  runId: string,
  pending: readonly Pending[],
  onBatch: (outcome: BatchOutcome, done: number) => void,
): Promise<void> {
  let recording: Promise<void> | undefined;
  for (let start = 0; start < pending.length; start += deps.batchSize) {
    const batch = pending.slice(start, start + deps.batchSize);
    const outcomes = await deps.provider.sendMeterEvents(batch.map((entry) => entry.event));
    await recording;
    const done = start + batch.length;
    recording = record(deps, tier, kind, runId, batch, outcomes).then((outcome) => onBatch(outcome, done));
  }
  await recording;
}

async function record(
  deps: Pick<BillingDeps, "state" | "audit" | "metrics" | "logger" | "live" | "now">,
  tier: string,
  kind: "sync" | "close",
  runId: string,
  batch: readonly Pending[],
  outcomes: readonly MeterEventOutcome[],
): Promise<BatchOutcome> {
  const at = deps.now();
  const rows: BillingAuditRow[] = [];
  const deliveredByPeriod = new Map<string, { period: Period; totals: Array<readonly [string, number]> }>();
  const deliveredCustomers = new Set<string>();
  let rejected = 0;
  let failed = 0;
  batch.forEach((entry, i) => {
    const outcome = outcomes[i];
    const status = outcome?.status ?? "failed";
    deps.metrics.meterEvents.inc({ tier, kind, outcome: status });
    if (status === "accepted" || status === "duplicate") {
      deliveredCustomers.add(entry.customerId);
      const group = deliveredByPeriod.get(entry.period.id) ?? { period: entry.period, totals: [] };
      group.totals.push([entry.customerId, entry.event.value]);
      deliveredByPeriod.set(entry.period.id, group);
    } else if (status === "rejected") rejected += 1;
    else failed += 1;
    const error = outcome && "error" in outcome ? outcome.error.message : "";
    if (status === "rejected") {
      deps.logger.error(
        { run_id: runId, customer_id: entry.customerId, tier, err: error },
        "stripe refused a meter event",
      );
    }
    rows.push({
      at,
      run_id: runId,
      kind,
      customer_id: entry.customerId,
      tier,
      period_id: entry.period.id,
      period_start: entry.period.start,
      period_end: entry.period.end,
      stripe_customer_id: entry.event.stripeCustomerId,
      meter_event_name: entry.event.eventName,
      value: entry.event.value,
      identifier: entry.event.identifier,
      event_time: entry.event.timestamp.getTime(),
      outcome: !deps.live && status === "accepted" ? "dry_run" : status,
      error,
    });
  });
  // Audit first: a crash between the two re-sends (as a duplicate) rather than leaving a hole in the audit.
  await deps.audit.write(rows);
  for (const { period, totals } of deliveredByPeriod.values()) await deps.state.recordSent(tier, period, totals);
  return { delivered: batch.length - rejected - failed, rejected, failed, deliveredCustomers };
}
