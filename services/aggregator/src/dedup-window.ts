import type { Redis } from "@keymeter/shared/stores";

/**
 * Remembers the (source, id) of stored events for a time window, so a producer's retry of
 * an event already counted is dropped. Ids live in Redis sets, one per time bucket, shared
 * by every aggregator instance (a retry may land after a rebalance). Ids are marked only
 * after their INSERT succeeded: a retried event must never count zero times.
 *
 * Memory: about 80 bytes per event in the window (events/s x window seconds).
 */
export class DedupWindow {
  private readonly bucketSeconds: number;
  private readonly buckets: number;

  constructor(
    private readonly redis: Redis,
    private readonly options: { windowSeconds: number; keyPrefix: string; now?: () => number },
  ) {
    // Two buckets per window (three keys checked): an id is remembered for between one and
    // one and a half windows. More buckets would mean more Redis work per event.
    this.bucketSeconds = Math.max(1, Math.ceil(options.windowSeconds / 2));
    this.buckets = Math.ceil(options.windowSeconds / this.bucketSeconds) + 1;
  }

  static member(source: string, id: string): string {
    return `${source}\n${id}`;
  }

  /** The subset of `members` already stored within the window. */
  async seen(members: string[]): Promise<Set<string>> {
    if (members.length === 0) return new Set();
    const pipeline = this.redis.pipeline();
    for (const key of this.windowKeys()) pipeline.smismember(key, ...members);
    const replies = (await pipeline.exec()) ?? [];
    const seen = new Set<string>();
    for (const [error, flags] of replies) {
      if (error) throw error;
      (flags as number[]).forEach((flag, i) => {
        const member = members[i];
        if (flag === 1 && member !== undefined) seen.add(member);
      });
    }
    return seen;
  }

  /** Records `members` as stored. */
  async mark(members: string[]): Promise<void> {
    if (members.length === 0) return;
    const [key] = this.windowKeys();
    if (!key) return;
    await this.redis
      .multi()
      .sadd(key, ...members)
      .expire(key, this.bucketSeconds * (this.buckets + 1))
      .exec();
  }

  /** The current bucket's key first, then the older ones still inside the window. */
  private windowKeys(): string[] {
    const nowSeconds = Math.floor((this.options.now?.() ?? Date.now()) / 1000);
    const current = Math.floor(nowSeconds / this.bucketSeconds);
    return Array.from({ length: this.buckets }, (_, i) => `${this.options.keyPrefix}${current - i}`);
  }
}
