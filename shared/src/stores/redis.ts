import { Redis } from "ioredis";

export { Redis };

/**
 * A Redis connection. `maxRetriesPerRequest: null` is what BullMQ requires of the
 * connections it is given; other callers get a bounded retry so a dead Redis fails fast.
 */
export function createRedis(url: string, options: { forBullMQ?: boolean } = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: options.forBullMQ ? null : 3,
    enableReadyCheck: true,
    lazyConnect: false,
  });
}
