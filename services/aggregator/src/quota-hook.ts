import {
  type Clock,
  type CounterDelta,
  checkFrom,
  type Period,
  periodOf,
  type QuotaSubject,
  type QuotaSubjects,
  systemClock,
  type UsageCounters,
} from "@keymeter/shared/billing";
import type { QuotaCheckQueue } from "@keymeter/shared/jobs";
import { eventTimeMs } from "@keymeter/shared/usage";
import type { StoredBatch } from "./aggregator";

export interface QuotaHookOptions {
  subjects: QuotaSubjects;
  counters: UsageCounters;
  checks: QuotaCheckQueue;
  /** Percent of the quota from which every batch asks for a check (the lowest webhook threshold). */
  checkFromPercent?: number;
  /** How long key, customer and override data is reused between batches. */
  cacheMs?: number;
  now?: Clock;
}

interface CachedSubject {
  subject: QuotaSubject | undefined;
  until: number;
}

/**
 * The aggregator's after-insert hook for quotas: per stored batch, one pipelined Redis call
 * bumps month-to-date counters per key and period (in the customer's zone), then keys at or
 * over `checkFromPercent` of their quota get a check job (deduplicated per key and period),
 * so enforcement never waits for the sweep. Counters are an estimate that only ever lags
 * (a crash before the bump); the check job and the sweep read ClickHouse.
 */
export class QuotaHook {
  private readonly cache = new Map<string, CachedSubject>();
  private readonly now: Clock;
  private readonly cacheMs: number;
  private readonly checkFromPercent: number;

  constructor(private readonly options: QuotaHookOptions) {
    this.now = options.now ?? systemClock;
    this.cacheMs = options.cacheMs ?? 5_000;
    this.checkFromPercent = options.checkFromPercent ?? 80;
  }

  /** Pass as `afterInsert` to the Aggregator. */
  readonly afterInsert = async (batch: StoredBatch): Promise<void> => {
    const subjects = await this.subjectsOf(batch.events.map((event) => event.subject));
    const deltas = new Map<string, CounterDelta>();
    // Consecutive events of a key mostly fall in the same period: one Intl call per key, not per event.
    const lastPeriod = new Map<string, Period>();
    for (const event of batch.events) {
      if (event.data.units === 0) continue;
      const subject = subjects.get(event.subject);
      if (!subject) continue;
      const at = eventTimeMs(event.time);
      let period = lastPeriod.get(subject.timeZone);
      if (!period || at < period.start || at >= period.end) {
        period = periodOf(at, subject.timeZone);
        lastPeriod.set(subject.timeZone, period);
      }
      const id = `${event.subject} ${period.id}`;
      const delta = deltas.get(id);
      if (delta) delta.units += event.data.units;
      else deltas.set(id, { keyId: event.subject, period, units: event.data.units });
    }
    const list = [...deltas.values()];
    const totals = await this.options.counters.bump(list);

    const now = this.now();
    const checks = list.flatMap((delta, i) => {
      const limit = subjects.get(delta.keyId)?.limit;
      const from = limit ? checkFrom(limit, [this.checkFromPercent]) : undefined;
      // Late events of a closed period change nothing a gateway enforces.
      if (from === undefined || delta.period.end <= now || (totals[i] ?? 0) < from) return [];
      return [{ key_id: delta.keyId, reason: "usage" as const, period_id: delta.period.id }];
    });
    await this.options.checks.enqueue(checks);
  };

  private async subjectsOf(keyIds: readonly string[]): Promise<Map<string, QuotaSubject | undefined>> {
    const now = Date.now();
    const result = new Map<string, QuotaSubject | undefined>();
    const missing: string[] = [];
    for (const keyId of new Set(keyIds)) {
      const cached = this.cache.get(keyId);
      if (cached && cached.until > now) result.set(keyId, cached.subject);
      else missing.push(keyId);
    }
    if (missing.length > 0) {
      const loaded = await this.options.subjects.load(missing);
      if (this.cache.size > 100_000) this.cache.clear();
      for (const keyId of missing) {
        const subject = loaded.get(keyId);
        this.cache.set(keyId, { subject, until: now + this.cacheMs });
        result.set(keyId, subject);
      }
    }
    return result;
  }
}
