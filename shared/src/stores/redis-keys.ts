/**
 * The Redis key layout, in one place. Every key and channel name goes through here, with a
 * prefix that gives tests (and side-by-side deployments) their own namespace.
 *
 * | key                                | type   | written by          | content                                   |
 * | ---------------------------------- | ------ | ------------------- | ----------------------------------------- |
 * | `apikey:record:<key_id>`           | string | key registry        | the key record, JSON (hashes, never secret) |
 * | `apikey:hash:<sha256 hex>`         | string | key registry        | the key id; a rotated-out hash expires at the end of its grace period |
 * | `apikey:alias:<alias>`             | string | key registry        | the key id an alias (Kong consumer id, another gateway's key id) stands for; unique |
 * | `apikey:ids`                       | zset   | key registry        | key ids scored by creation time (ms)      |
 * | `apikey:customer:<customer_id>`    | zset   | key registry        | one customer's key ids, by creation time  |
 * | `ratelimit:<key_id>`               | string | gateway limiter     | GCRA theoretical arrival time (µs)        |
 * | `quota:flag:<key_id>`              | string | quota worker        | why the key is over quota, JSON; expires at period end |
 *
 * Channels: `apikey:changed` (message: JSON `{ keyId, hashes }`, after any change to a key)
 * and `quota:flag:changed` (message: the key id, after a flag is set or cleared).
 */
export interface RedisKeys {
  keyRecord(keyId: string): string;
  keyByHash(hash: string): string;
  keyAlias(alias: string): string;
  keyIds: string;
  customerKeyIds(customerId: string): string;
  rateLimit(keyId: string): string;
  quotaFlag(keyId: string): string;
  keyChangedChannel: string;
  quotaFlagChannel: string;
}

export function redisKeys(prefix = ""): RedisKeys {
  return {
    keyRecord: (keyId) => `${prefix}apikey:record:${keyId}`,
    keyByHash: (hash) => `${prefix}apikey:hash:${hash}`,
    keyAlias: (alias) => `${prefix}apikey:alias:${alias}`,
    keyIds: `${prefix}apikey:ids`,
    customerKeyIds: (customerId) => `${prefix}apikey:customer:${customerId}`,
    rateLimit: (keyId) => `${prefix}ratelimit:${keyId}`,
    quotaFlag: (keyId) => `${prefix}quota:flag:${keyId}`,
    keyChangedChannel: `${prefix}apikey:changed`,
    quotaFlagChannel: `${prefix}quota:flag:changed`,
  };
}
