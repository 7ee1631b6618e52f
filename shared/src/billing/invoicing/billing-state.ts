import { z } from "zod";
import type { Redis } from "../../stores/redis";
import type { RedisKeys } from "../../stores/redis-keys";
import type { Period } from "../periods";

const DAY_MS = 86_400_000;
/** Sent totals are only needed while a period can still change (Stripe takes events up to 35 days back). */
const SENT_TTL_AFTER_PERIOD_MS = 40 * DAY_MS;
/** Closed markers outlive the audit questions about them (a year and a month). */
const CLOSED_TTL_AFTER_PERIOD_MS = 400 * DAY_MS;

/** The final totals per tier a month close sends, frozen before the first send. */
export const closeSnapshotSchema = z.object({
  period_id: z.string(),
  period_start: z.number(),
  period_end: z.number(),
  /** tier -> units in the period when the close read them. */
  totals: z.record(z.string(), z.number().int().nonnegative()),
  taken_at: z.number(),
});
export type CloseSnapshot = z.infer<typeof closeSnapshotSchema>;

/** A closed period: what Stripe got at close, and when. */
export const closedPeriodSchema = closeSnapshotSchema.extend({
  closed_at: z.number(),
  /** The close finished after the invoice grace period (Stripe may have finalized without it). */
  late: z.boolean(),
});
export type ClosedPeriod = z.infer<typeof closedPeriodSchema>;

/**
 * The billing worker's progress in Redis (AOF on):
 *
 * - per tier and period, the month-to-date total Stripe accepted per customer: a run resumed
 *   after a crash sends only customers whose total differs (none twice needlessly), and since
 *   the set of customers comes from ClickHouse on every run, none is missed;
 * - per customer and period, the frozen close snapshot and the closed marker.
 */
export class BillingState {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  /** Totals Stripe accepted for these customers in `tier` and period `periodId`. */
  async sentTotals(tier: string, periodId: string, customerIds: readonly string[]): Promise<Map<string, number>> {
    const sent = new Map<string, number>();
    const key = this.keys.billingSent(tier, periodId);
    for (let start = 0; start < customerIds.length; start += 1000) {
      const ids = customerIds.slice(start, start + 1000);
      const values = await this.redis.hmget(key, ...ids);
      values.forEach((value, i) => {
        const id = ids[i];
        if (value !== null && id !== undefined) sent.set(id, Number(value));
      });
    }
    return sent;
  }

  /** Records totals Stripe accepted (or already held). Called only after Stripe's answer. */
  async recordSent(tier: string, period: Period, totals: ReadonlyArray<readonly [string, number]>): Promise<void> {
    if (totals.length === 0) return;
    const key = this.keys.billingSent(tier, period.id);
    const fields: string[] = [];
    for (const [customer, total] of totals) fields.push(customer, String(total));
    await this.redis
      .multi()
      .hset(key, ...fields)
      .pexpireat(key, period.end + SENT_TTL_AFTER_PERIOD_MS)
      .exec();
  }

  /**
   * Stores `snapshot` as the close's final totals unless one is stored already, and returns
   * the stored one: a retried close sends exactly what the first attempt sent.
   */
  async takeCloseSnapshot(customerId: string, snapshot: CloseSnapshot): Promise<CloseSnapshot> {
    const key = this.keys.billingCloseSnapshot(snapshot.period_id, customerId);
    const ttlMs = snapshot.period_end + CLOSED_TTL_AFTER_PERIOD_MS - snapshot.taken_at;
    const stored = await this.redis.set(key, JSON.stringify(snapshot), "PX", Math.max(ttlMs, DAY_MS), "NX");
    if (stored === "OK") return snapshot;
    const existing = closeSnapshotSchema.safeParse(parseJson(await this.redis.get(key)));
    return existing.success ? existing.data : snapshot;
  }

  async markClosed(customerId: string, closed: ClosedPeriod): Promise<void> {
    const ttlMs = closed.period_end + CLOSED_TTL_AFTER_PERIOD_MS - closed.closed_at;
    await this.redis.set(
      this.keys.billingClosed(closed.period_id, customerId),
      JSON.stringify(closed),
      "PX",
      Math.max(ttlMs, DAY_MS),
    );
  }

  /** Closed markers of these customers for period `periodId`; open ones are absent. */
  async closed(periodId: string, customerIds: readonly string[]): Promise<Map<string, ClosedPeriod>> {
    const found = new Map<string, ClosedPeriod>();
    for (let start = 0; start < customerIds.length; start += 1000) {
      const ids = customerIds.slice(start, start + 1000);
      if (ids.length === 0) break;
      const values = await this.redis.mget(ids.map((id) => this.keys.billingClosed(periodId, id)));
      values.forEach((value, i) => {
        const id = ids[i];
        const parsed = closedPeriodSchema.safeParse(parseJson(value));
        if (id !== undefined && parsed.success) found.set(id, parsed.data);
      });
    }
    return found;
  }
}

function parseJson(value: string | null): unknown {
  if (value === null) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    // A corrupt value reads as absent; the close or sync writes it again.
    return undefined;
  }
}
