import {
  type Clock,
  clearQuotaFlag,
  type Period,
  periodKey,
  periodOf,
  type QuotaFlag,
  type QuotaSubject,
  type QuotaSubjects,
  quotaVerdict,
  reachedThresholds,
  readQuotaFlags,
  setQuotaFlag,
  type UsageCounters,
  type UsageReader,
} from "@keymeter/shared/billing";
import type { CheckReason } from "@keymeter/shared/jobs";
import type { Logger } from "@keymeter/shared/runtime";
import type { Redis, RedisKeys } from "@keymeter/shared/stores";
import type { QuotaWorkerMetrics } from "./metrics";
import type { ThresholdCrossing, ThresholdWebhooks } from "./threshold-webhooks";

export interface QuotaEnforcerOptions {
  redis: Redis;
  keys: RedisKeys;
  subjects: QuotaSubjects;
  usage: UsageReader;
  counters: UsageCounters;
  webhooks: ThresholdWebhooks;
  metrics: QuotaWorkerMetrics;
  logger: Logger;
  /** Percentages of the quota that trigger webhooks. */
  thresholds: readonly number[];
  now: Clock;
}

/** What one key's evaluation did. */
export type FlagChange = "set" | "cleared" | "unchanged";

export interface SweepResult {
  keys: number;
  flagged: number;
  set: number;
  cleared: number;
  countersRaised: number;
  webhooksEnqueued: number;
  seconds: number;
}

/**
 * Compares month-to-date usage (ClickHouse) with each key's quota and sets or clears its flag.
 * Flags are written first and webhooks enqueued after, so a slow or failing endpoint never
 * delays enforcement. The sweep also raises the Redis counters to ClickHouse's figures, so a
 * crash between an insert and its counter bump is repaired within one sweep interval.
 */
export class QuotaEnforcer {
  constructor(private readonly options: QuotaEnforcerOptions) {}

  /** One key, now: the check job. */
  async checkKey(keyId: string, reason: CheckReason): Promise<FlagChange> {
    const { redis, keys, subjects, usage, counters, metrics } = this.options;
    metrics.checks.inc({ reason });
    const subject = (await subjects.load([keyId])).get(keyId);
    if (!subject) {
      const cleared = await clearQuotaFlag(redis, keys, keyId);
      if (cleared) metrics.flagsCleared.inc();
      return cleared ? "cleared" : "unchanged";
    }
    const period = periodOf(this.options.now(), subject.timeZone);
    const used = await usage.keyUnits(keyId, period);
    if (used > 0) {
      const raised = await counters.raise([{ keyId, period, units: used }]);
      metrics.countersRepaired.inc(raised);
    }
    const flag = (await readQuotaFlags(redis, keys, [keyId])).get(keyId);
    const change = await this.applyFlag(subject, period, used, flag);
    await this.options.webhooks.schedule(this.crossings([{ subject, period, used }]));
    this.options.logger.debug({ key_id: keyId, reason, used, period: period.id, change }, "quota checked");
    return change;
  }

  /** Every registered key: the scheduled sweep. */
  async sweep(): Promise<SweepResult> {
    const started = performance.now();
    const phases: Record<string, number> = {};
    let mark = started;
    const phase = (name: string) => {
      const now = performance.now();
      phases[name] = Math.round(now - mark);
      mark = now;
    };
    const { redis, keys, subjects, usage, counters, metrics } = this.options;
    const all: QuotaSubject[] = [];
    for await (const ids of subjects.allKeyIds()) all.push(...(await subjects.load(ids)).values());
    phase("load_keys_ms");

    const now = this.options.now();
    const periods = new Map<string, Period>();
    for (const subject of all) {
      if (!periods.has(subject.timeZone)) periods.set(subject.timeZone, periodOf(now, subject.timeZone));
    }
    const units = await usage.unitsByKey([...periods.values()]);
    phase("clickhouse_ms");
    const flags = await readQuotaFlags(
      redis,
      keys,
      all.map((subject) => subject.keyId),
    );

    const evaluated = all.map((subject) => {
      const period = periods.get(subject.timeZone) as Period;
      const used = units.get(periodKey(period))?.get(subject.keyId) ?? 0;
      return { subject, period, used };
    });
    const raised = await counters.raise(
      evaluated
        .filter((item) => item.used > 0)
        .map((item) => ({ keyId: item.subject.keyId, period: item.period, units: item.used })),
    );
    metrics.countersRepaired.inc(raised);
    phase("counters_ms");

    let set = 0;
    let cleared = 0;
    let flagged = 0;
    // Only keys whose flag must change cost a write; 500 at a time keeps Redis responsive.
    const changes = evaluated.filter((item) => this.needsChange(item, flags.get(item.subject.keyId)));
    for (let start = 0; start < changes.length; start += 500) {
      const results = await Promise.all(
        changes
          .slice(start, start + 500)
          .map((item) => this.applyFlag(item.subject, item.period, item.used, flags.get(item.subject.keyId))),
      );
      for (const result of results) {
        if (result === "set") set++;
        if (result === "cleared") cleared++;
      }
    }
    for (const item of evaluated) if (this.blocks(item)) flagged++;
    phase("flags_ms");
    const webhooksEnqueued = await this.options.webhooks.schedule(this.crossings(evaluated));
    phase("webhooks_ms");

    const seconds = (performance.now() - started) / 1000;
    metrics.sweepSeconds.observe(seconds);
    metrics.sweepKeys.set(all.length);
    metrics.flaggedKeys.set(flagged);
    const result = { keys: all.length, flagged, set, cleared, countersRaised: raised, webhooksEnqueued, seconds };
    this.options.logger.info({ ...result, ...phases }, "quota sweep done");
    return result;
  }

  private blocks(item: { subject: QuotaSubject; used: number }): boolean {
    const { subject, used } = item;
    return subject.active && subject.limit !== undefined && quotaVerdict(subject.limit, used).block;
  }

  private flagFor(subject: QuotaSubject, period: Period, used: number): QuotaFlag {
    return { used, quota: subject.limit?.quota ?? 1, period_end: new Date(period.end).toISOString() };
  }

  private needsChange(item: { subject: QuotaSubject; period: Period; used: number }, flag: QuotaFlag | undefined) {
    if (!this.blocks(item)) return flag !== undefined;
    const wanted = this.flagFor(item.subject, item.period, item.used);
    return flag === undefined || flag.quota !== wanted.quota || flag.period_end !== wanted.period_end;
  }

  /** Sets or clears one key's flag as its usage demands; `flag` is what Redis holds now. */
  private async applyFlag(
    subject: QuotaSubject,
    period: Period,
    used: number,
    flag: QuotaFlag | undefined,
  ): Promise<FlagChange> {
    const { redis, keys, metrics, logger } = this.options;
    const item = { subject, period, used };
    if (!this.needsChange(item, flag)) return "unchanged";
    const wanted = this.flagFor(subject, period, used);
    if (this.blocks(item)) {
      await setQuotaFlag(redis, keys, subject.keyId, wanted);
      metrics.flagsSet.inc();
      logger.info({ key_id: subject.keyId, used, quota: wanted.quota, period: period.id }, "key flagged over quota");
      return "set";
    }
    // A key still under a blocking quota keeps a flag a fresher check recorded; otherwise it goes.
    const guarded = subject.active && subject.limit?.quota != null && subject.limit.overage === "block";
    const removed = await clearQuotaFlag(redis, keys, subject.keyId, guarded ? wanted : undefined);
    if (!removed) return "unchanged";
    metrics.flagsCleared.inc();
    logger.info(
      { key_id: subject.keyId, used, quota: subject.limit?.quota ?? null, period: period.id },
      "quota flag cleared",
    );
    return "cleared";
  }

  private crossings(
    items: ReadonlyArray<{ subject: QuotaSubject; period: Period; used: number }>,
  ): ThresholdCrossing[] {
    return items.flatMap(({ subject, period, used }) => {
      const limit = subject.limit;
      if (!subject.active || !limit || limit.quota === null || subject.webhooks.length === 0) return [];
      const reached = reachedThresholds(limit, used, this.options.thresholds);
      return reached.length === 0 ? [] : [{ subject, period, used, limit: { ...limit, quota: limit.quota }, reached }];
    });
  }
}
