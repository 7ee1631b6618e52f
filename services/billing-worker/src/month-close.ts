import { DEFAULT_TIME_ZONE, type Period, periodKey, periodOf, previousPeriod } from "@keymeter/shared/billing";
import { type BillingAuditRow, type CloseSnapshot, stampWindow } from "@keymeter/shared/billing/invoicing";
import { type MeterEvent, meterTotalEvent } from "@keymeter/shared/billing/provider";
import { AppError } from "@keymeter/shared/runtime";
import { type BillingDeps, memoByZone, sendInBatches } from "./tier-sync";

const DAY_MS = 86_400_000;

export interface CloseResult {
  /** Customers whose period was closed by this run. */
  closed: number;
  /** Of those, closed after the invoice grace period. */
  late: number;
  /** Customers with usage that cannot be billed (no Stripe customer): left open, reported. */
  unlinked: number;
  /** Customers whose final totals were not all delivered (retried). */
  pending: number;
}

export interface MonthCloseOptions {
  /** Wait this long after a period ends before closing it (events in flight). */
  settleMs: number;
  /** Stripe finalizes the invoice this long after the period ends. */
  graceMs: number;
}

/**
 * The month close: for every customer with billed usage whose previous period (in their time
 * zone) ended at least `settleMs` ago and is not closed, freeze the final totals per tier
 * (stored before the first send, so a retry sends the very same events), send them stamped at
 * the period's last second (inside the closed period, and later than any sync reading, so they
 * are what the `last` meter bills), then mark the period closed (Redis + audit). Usage that
 * arrives afterwards is never sent: reconciliation reports it as `late_usage`.
 */
export class MonthClose {
  constructor(
    private readonly deps: BillingDeps,
    private readonly options: MonthCloseOptions,
  ) {}

  async run(runId: string): Promise<CloseResult> {
    const { usage, state, customers, tiers, logger, metrics, stripeCustomers, setup } = this.deps;
    const billed = tiers.billed().map((tier) => tier.name);
    const result: CloseResult = { closed: 0, late: 0, unlinked: 0, pending: 0 };
    if (billed.length === 0) return result;
    const now = this.deps.now();
    const utcPrevious = previousPeriod(periodOf(now, DEFAULT_TIME_ZONE), DEFAULT_TIME_ZONE);
    // Up to now, not to the end of the previous UTC month: a zone east of UTC has its previous
    // month end inside the current UTC month (Kolkata's November ends Nov 30, 18:30 UTC).
    const candidates = [...(await usage.customersWithUsage(billed, utcPrevious.start - DAY_MS, now))];
    const records = await customers.getMany(candidates);

    const due = new Map<string, Period>();
    const previousOfZone = memoByZone((timeZone) => previousPeriod(periodOf(now, timeZone), timeZone));
    for (const id of candidates) {
      const period = previousOfZone(records.get(id)?.time_zone ?? DEFAULT_TIME_ZONE);
      if (now >= period.end + this.options.settleMs) due.set(id, period);
    }
    const open = new Map<string, Period>();
    const byPeriodId = new Map<string, string[]>();
    for (const [id, period] of due) byPeriodId.set(period.id, [...(byPeriodId.get(period.id) ?? []), id]);
    for (const [periodId, ids] of byPeriodId) {
      const closed = await state.closed(periodId, ids);
      for (const id of ids) {
        const period = due.get(id);
        if (period && !closed.has(id)) open.set(id, period);
      }
    }
    if (open.size === 0) return result;
    const totals = await usage.totals(billed, [...new Set(open.values())]);

    const billings = await setup.tierBilling();
    const batches = new Map<string, Array<{ customerId: string; period: Period; event: MeterEvent }>>();
    const snapshots = new Map<string, { period: Period; snapshot: CloseSnapshot; stripeCustomerId: string }>();
    for (const [id, period] of open) {
      const units = totals.get(periodKey(period))?.get(id);
      if (!units || [...units.values()].every((value) => value === 0)) continue;
      const stripeCustomerId = await stripeCustomers.resolve(id, records.get(id));
      if (!stripeCustomerId) {
        result.unlinked += 1;
        continue;
      }
      const snapshot = await state.takeCloseSnapshot(id, {
        period_id: period.id,
        period_start: period.start,
        period_end: period.end,
        totals: Object.fromEntries([...units].filter(([tier]) => billed.includes(tier))),
        taken_at: now,
      });
      snapshots.set(id, { period, snapshot, stripeCustomerId });
      for (const [tier, total] of Object.entries(snapshot.totals)) {
        const billing = billings.get(tier);
        if (!billing || total === 0) continue;
        const window = stampWindow(period, records.get(id)?.time_zone ?? DEFAULT_TIME_ZONE);
        const event = meterTotalEvent({
          eventName: billing.meter.eventName,
          stripeCustomerId,
          period: { start: new Date(window.start), end: new Date(window.end) },
          total,
          // Clamped to the window's last second: inside the closed period, after every sync reading.
          asOf: new Date(window.end),
        });
        const batch = batches.get(tier) ?? [];
        batch.push({ customerId: id, period, event });
        batches.set(tier, batch);
      }
    }

    const undelivered = new Set<string>();
    for (const [tier, events] of batches) {
      const delivered = new Set<string>();
      await sendInBatches(this.deps, tier, "close", runId, events, (outcome) => {
        for (const id of outcome.deliveredCustomers) delivered.add(id);
      });
      for (const entry of events) if (!delivered.has(entry.customerId)) undelivered.add(entry.customerId);
    }

    const closedRows: BillingAuditRow[] = [];
    const closing: Array<{ id: string; period: Period; snapshot: CloseSnapshot; late: boolean }> = [];
    const closedAt = this.deps.now();
    for (const [id, { period, snapshot, stripeCustomerId }] of snapshots) {
      if (undelivered.has(id)) {
        result.pending += 1;
        continue;
      }
      const late = closedAt > period.end + this.options.graceMs;
      closing.push({ id, period, snapshot, late });
      for (const [tier, total] of Object.entries(snapshot.totals)) {
        closedRows.push({
          at: closedAt,
          run_id: runId,
          kind: "closed",
          customer_id: id,
          tier,
          period_id: period.id,
          period_start: period.start,
          period_end: period.end,
          stripe_customer_id: stripeCustomerId,
          meter_event_name: billings.get(tier)?.meter.eventName ?? "",
          value: total,
          identifier: "",
          event_time: Math.max(period.start, period.end - 1000),
          outcome: "closed",
          error: late ? "closed after the invoice grace period" : "",
        });
      }
    }
    // Audit before the markers: a crash in between closes again (same events, duplicates), never unaudited.
    await this.deps.audit.write(closedRows);
    for (const { id, period, snapshot, late } of closing) {
      await state.markClosed(id, { ...snapshot, closed_at: closedAt, late });
      result.closed += 1;
      metrics.closes.inc();
      metrics.closeLag.set((closedAt - period.end) / 1000);
      if (late) {
        result.late += 1;
        metrics.lateCloses.inc();
        logger.error(
          {
            run_id: runId,
            customer_id: id,
            period: period.id,
            late_by_ms: closedAt - period.end - this.options.graceMs,
          },
          "month close finished after the invoice grace period: check the invoice",
        );
      }
    }
    logger.info({ run_id: runId, ...result }, "month close pass done");
    if (result.pending > 0) {
      throw new AppError("service_unavailable", `${result.pending} customers' final totals were not delivered`, {
        retryable: true,
      });
    }
    return result;
  }
}
