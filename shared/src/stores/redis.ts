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

/**
 * GET of many keys: MGETs of `chunk` keys, sent `perRoundTrip` at a time in one pipeline
 * (100,000 keys cost 5 round trips instead of 100). Values come back in order; null when absent.
 */
export async function mgetMany(
  redis: Redis,
  keys: readonly string[],
  options: { chunk?: number; perRoundTrip?: number } = {},
): Promise<Array<string | null>> {
  const chunk = options.chunk ?? 1000;
  const perRoundTrip = options.perRoundTrip ?? 20;
  const values: Array<string | null> = [];
  for (let start = 0; start < keys.length; start += chunk * perRoundTrip) {
    const pipeline = redis.pipeline();
    const end = Math.min(keys.length, start + chunk * perRoundTrip);
    for (let at = start; at < end; at += chunk) pipeline.mget(keys.slice(at, Math.min(end, at + chunk)));
    for (const [error, reply] of (await pipeline.exec()) ?? []) {
      if (error) throw error;
      values.push(...(reply as Array<string | null>));
    }
  }
  return values;
}
