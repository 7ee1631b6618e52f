import type { Logger } from "./logger";

/**
 * Logs a recurring problem (a store that is down, retried many times a second) at most once
 * per interval per key, each line with `occurrences`: how often it happened since the last
 * line, this one included.
 */
export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  log(level: "error" | "warn", key: string, fields: Record<string, unknown>, message: string): void {
    const now = this.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return;
    }
    this.last.set(key, { at: now, suppressed: 0 });
    this.logger[level]({ ...fields, occurrences: (entry?.suppressed ?? 0) + 1 }, message);
  }
}
