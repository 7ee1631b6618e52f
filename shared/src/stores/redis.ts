import { Redis } from "ioredis";
import { createLogger, type Logger } from "../runtime/logger";
import { RateLimitedLog } from "../runtime/rate-limited-log";

export { Redis };

export interface CreateRedisOptions {
  /** BullMQ requires `maxRetriesPerRequest: null` of the connections it is given. */
  forBullMQ?: boolean;
  /** Where connection errors are logged (rate-limited); a JSON logger on stdout when not given. */
  logger?: Logger;
  /** Names the connection in those log lines (`redis`, `redis-subscriber`, ...). */
  name?: string;
}

/**
 * A Redis connection. `maxRetriesPerRequest: null` is what BullMQ requires of the
 * connections it is given; other callers get a bounded retry so a dead Redis fails fast.
 * Connection errors are logged as structured lines, at most one per 10 s with a count:
 * without a listener ioredis prints `Unhandled error event` on every reconnect attempt.
 */
export function createRedis(url: string, options: CreateRedisOptions = {}): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: options.forBullMQ ? null : 3,
    enableReadyCheck: true,
    lazyConnect: false,
  });
  const name = options.name ?? "redis";
  const log = new RateLimitedLog(options.logger ?? createLogger(name));
  redis.on("error", (error: Error) => {
    log.log("warn", "error", { client: name, err: error.message }, "redis connection error; reconnecting");
  });
  return redis;
}
