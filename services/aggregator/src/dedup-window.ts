import type { Redis } from "@keymeter/shared/stores";
import { FingerprintList, FingerprintSet } from "./fingerprints";

/**
 * The Redis key prefix of a topic's dedup window. `fp1` names the fingerprint function of
 * fingerprints.ts: a different one needs a new name, so no instance reads prints it cannot match.
 */
export const dedupWindowKeyPrefix = (dedupKeyPrefix: string, topic: string) => `${dedupKeyPrefix}${topic}:fp1:`;

/** One owned partition's window: a set of fingerprints per time bucket. */
type PartitionWindow = Map<number, FingerprintSet>;

/**
 * Remembers the (source, id) of stored events for a time window, so a producer's retry of an
 * event already counted is dropped. A retry carries the same key id, so it lands on the same
 * partition: each partition's window is held in memory by the aggregator that owns it and
 * checked there, with no round trip. Redis is only for hand-over: every batch's fingerprints
 * are appended to the partition's bucket key before its Kafka commit, and a new owner loads
 * them when it is assigned the partition. Ids are marked only after their INSERT succeeded:
 * a retried event must never count zero times.
 *
 * Memory per event in the window (events/s x window seconds): 16 bytes in Redis, 32-64 in
 * this process (hash sets in typed arrays, at most half full). A Redis string holds 512 MB: up
 * to ~33 million events per partition and half-window bucket.
 */
export class DedupWindow {
  private readonly bucketSeconds: number;
  private readonly buckets: number;
  private readonly windows = new Map<number, PartitionWindow>();
  private readonly probe = new FingerprintList(1);

  constructor(
    private readonly redis: Redis,
    private readonly options: { windowSeconds: number; keyPrefix: string; now?: () => number },
  ) {
    // Two buckets per window (three live): an id is remembered for between one and one and a
    // half windows.
    this.bucketSeconds = Math.max(1, Math.ceil(options.windowSeconds / 2));
    this.buckets = Math.ceil(options.windowSeconds / this.bucketSeconds) + 1;
  }

  static member(source: string, id: string): string {
    return `${source}\n${id}`;
  }

  /** Drops every partition's window: after a rebalance, another instance may have added to them. */
  forgetAll(): void {
    this.windows.clear();
  }

  /**
   * Readies `partition`'s window for a batch: loads it from Redis unless it is held already,
   * and drops buckets that fell out of the window.
   */
  async load(partition: number): Promise<void> {
    const ids = this.bucketIds();
    const held = this.windows.get(partition);
    if (held) {
      for (const id of held.keys()) if (!ids.includes(id)) held.delete(id);
      return;
    }
    const blobs = await this.redis.mgetBuffer(...ids.map((id) => this.key(partition, id)));
    const window: PartitionWindow = new Map();
    ids.forEach((id, i) => {
      const set = new FingerprintSet();
      const blob = blobs[i];
      if (blob) set.addAll(blob);
      window.set(id, set);
    });
    this.windows.set(partition, window);
  }

  /** True when fingerprint `index` of `prints` is in `partition`'s window (loaded first). */
  seen(partition: number, prints: FingerprintList, index: number): boolean {
    const window = this.windows.get(partition);
    if (!window) throw new Error(`dedup window of partition ${partition} is not loaded`);
    for (const set of window.values()) if (set.has(prints, index)) return true;
    return false;
  }

  /** Loads the window if need be and tells whether `source`/`id` is in it. */
  async has(partition: number, source: string, id: string): Promise<boolean> {
    await this.load(partition);
    this.probe.count = 0;
    return this.seen(partition, this.probe, this.probe.push(DedupWindow.member(source, id)));
  }

  /** Records the fingerprints as stored: in Redis first (for the next owner), then here. */
  async mark(partition: number, prints: FingerprintList): Promise<void> {
    if (prints.count === 0) return;
    const [current] = this.bucketIds();
    if (current === undefined) return;
    const key = this.key(partition, current);
    await this.redis
      .multi()
      .append(key, prints.toBuffer())
      .expire(key, this.bucketSeconds * (this.buckets + 1))
      .exec();
    const window = this.windows.get(partition);
    // Not held (a rebalance in between): the next load reads what was just written.
    if (!window) return;
    let set = window.get(current);
    if (!set) {
      set = new FingerprintSet(prints.count);
      window.set(current, set);
    }
    for (let i = 0; i < prints.count; i++) set.add(prints, i);
  }

  private key(partition: number, bucket: number): string {
    return `${this.options.keyPrefix}${partition}:${bucket}`;
  }

  /** The current bucket first, then the older ones still inside the window. */
  private bucketIds(): number[] {
    const nowSeconds = Math.floor((this.options.now?.() ?? Date.now()) / 1000);
    const current = Math.floor(nowSeconds / this.bucketSeconds);
    return Array.from({ length: this.buckets }, (_, i) => current - i);
  }
}
