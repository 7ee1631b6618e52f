export interface MeterEventLimiterOptions {
  /** Calls per second (Stripe's meter event endpoint allows 1,000 in live mode). */
  eventsPerSecond?: number;
  /** Calls allowed at once after a quiet spell; defaults to a tenth of a second's worth (at least 1). */
  burst?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Keeps meter event calls under Stripe's limits on our side: a token bucket for calls per
 * second (each attempt, retries included, takes a token) and one call in flight per key
 * (Stripe allows one concurrent call per customer per meter and answers a second with 429).
 */
export class MeterEventLimiter {
  readonly eventsPerSecond: number;
  private readonly burst: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  private tokens: number;
  private refilledAt: number;
  private readonly tails = new Map<string, Promise<void>>();

  constructor(options: MeterEventLimiterOptions = {}) {
    this.eventsPerSecond = options.eventsPerSecond ?? 1000;
    if (!(this.eventsPerSecond > 0)) throw new RangeError("eventsPerSecond must be positive");
    this.burst = Math.max(1, options.burst ?? Math.floor(this.eventsPerSecond / 10));
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.tokens = this.burst;
    this.refilledAt = this.now();
  }

  /**
   * Waits for a token. Tokens are reserved in call order (the bucket may go into debt), so
   * waiting callers are served first come, first served and the rate holds under concurrency.
   */
  async acquire(): Promise<void> {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.refilledAt) / 1000) * this.eventsPerSecond);
    this.refilledAt = now;
    this.tokens -= 1;
    if (this.tokens >= 0) return;
    await this.sleep((-this.tokens / this.eventsPerSecond) * 1000);
  }

  /** Runs `task` once no other task with the same key is running; tasks of one key run in call order. */
  async exclusive<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release: () => void = () => {};
    const done = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = previous.then(() => done);
    this.tails.set(key, tail);
    await previous;
    try {
      return await task();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
