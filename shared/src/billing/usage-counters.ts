import { mgetMany, type Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";
import type { Period } from "./periods";

/** Counters outlive their period by a day: late events and a last sweep still find them. */
const COUNTER_GRACE_MS = 86_400_000;

export interface CounterDelta {
  keyId: string;
  period: Period;
  units: number;
}

/**
 * Raises a counter to a value, never lowers it: counters only miss usage (a crash between a
 * ClickHouse insert and the bump), so the truth from ClickHouse can only be higher. A lower
 * ClickHouse figure read before a concurrent bump must not undo that bump.
 * KEYS: counters. ARGV: pairs of (value, expire-at ms).
 */
const RAISE_SCRIPT = `
local raised = 0
for i = 1, #KEYS do
  local value = tonumber(ARGV[i * 2 - 1])
  local current = tonumber(redis.call('GET', KEYS[i]) or '-1')
  if current < value then
    redis.call('SET', KEYS[i], value, 'PXAT', ARGV[i * 2])
    raised = raised + 1
  end
end
return raised
`;

/**
 * Month-to-date units per key and period in Redis: a fast estimate the aggregator bumps per
 * stored batch so checks are enqueued without asking ClickHouse. ClickHouse stays the truth;
 * the quota sweep raises counters that fell behind it.
 */
export class UsageCounters {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
  ) {}

  /** Adds each delta in one pipelined round trip; returns the new totals, in order. */
  async bump(deltas: readonly CounterDelta[]): Promise<number[]> {
    if (deltas.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const delta of deltas) {
      const key = this.keys.usageCounter(delta.period.id, delta.keyId);
      pipeline.incrby(key, delta.units).pexpireat(key, delta.period.end + COUNTER_GRACE_MS);
    }
    const replies = (await pipeline.exec()) ?? [];
    return deltas.map((_, i) => {
      const [error, value] = replies[i * 2] ?? [new Error("no reply"), null];
      if (error) throw error;
      return Number(value);
    });
  }

  async read(keyId: string, periodId: string): Promise<number> {
    return Number((await this.redis.get(this.keys.usageCounter(periodId, keyId))) ?? 0);
  }

  /**
   * Raises counters to ClickHouse's figures (never lowers one); returns how many were behind.
   * Counters are read first, so a sweep in the steady state (nothing behind) writes nothing.
   */
  async raise(values: readonly CounterDelta[]): Promise<number> {
    const current = await mgetMany(
      this.redis,
      values.map((v) => this.keys.usageCounter(v.period.id, v.keyId)),
    );
    const behind = values.filter((v, i) => Number(current[i] ?? -1) < v.units);
    let raised = 0;
    for (let start = 0; start < behind.length; start += 1000) {
      const chunk = behind.slice(start, start + 1000);
      const result = await this.redis.eval(
        RAISE_SCRIPT,
        chunk.length,
        ...chunk.map((v) => this.keys.usageCounter(v.period.id, v.keyId)),
        ...chunk.flatMap((v) => [v.units, v.period.end + COUNTER_GRACE_MS]),
      );
      raised += Number(result);
    }
    return raised;
  }
}
