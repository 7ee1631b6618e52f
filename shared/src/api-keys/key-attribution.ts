import type { Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";
import { KEY_ID } from "./key-format";
import { parseKeyRecord } from "./key-record";

/** Who a usage event belongs to, from the key registry. */
export interface KeyAttribution {
  keyId: string;
  customerId: string;
  tier: string;
}

export interface KeyAttributorOptions {
  redis: Redis;
  keys: RedisKeys;
  /** How long an answer (also "unknown") is reused; a tier change shows after at most this long. */
  ttlMs?: number;
  /** Cached subjects at most; the cache is emptied when full (a burst of invented subjects cannot grow it). */
  maxEntries?: number;
  now?: () => number;
}

/**
 * Resolves event subjects (key ids, or aliases such as a Kong consumer's custom_id) to the
 * key and its current customer and tier, from the registry's records in Redis: at most two
 * round trips per call (aliases, then records), answers cached briefly. Used by the HTTP
 * ingest (at receive time) and the aggregator (for events that still lack attribution).
 * A Redis failure is thrown, never turned into "unknown".
 */
export class KeyAttributor {
  private readonly cache = new Map<string, { value: KeyAttribution | null; at: number }>();
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;

  constructor(private readonly options: KeyAttributorOptions) {
    this.ttlMs = options.ttlMs ?? 10_000;
    this.maxEntries = options.maxEntries ?? 100_000;
    this.now = options.now ?? Date.now;
  }

  /** Each subject's key, or null when the registry knows no key by that id or alias. */
  async resolve(subjects: Iterable<string>): Promise<Map<string, KeyAttribution | null>> {
    const now = this.now();
    const answers = new Map<string, KeyAttribution | null>();
    const missing: string[] = [];
    for (const subject of new Set(subjects)) {
      const cached = this.cache.get(subject);
      if (cached && now - cached.at < this.ttlMs) answers.set(subject, cached.value);
      else missing.push(subject);
    }
    if (missing.length === 0) return answers;

    const aliases = missing.filter((subject) => !KEY_ID.test(subject));
    const aliasTargets = new Map<string, string>();
    if (aliases.length > 0) {
      const ids = await this.options.redis.mget(aliases.map((alias) => this.options.keys.keyAlias(alias)));
      aliases.forEach((alias, i) => {
        const id = ids[i];
        if (id) aliasTargets.set(alias, id);
      });
    }
    const keyIds = [...new Set([...missing.filter((subject) => KEY_ID.test(subject)), ...aliasTargets.values()])];
    const records = new Map<string, KeyAttribution>();
    if (keyIds.length > 0) {
      const raw = await this.options.redis.mget(keyIds.map((id) => this.options.keys.keyRecord(id)));
      raw.forEach((text) => {
        if (text === null) return;
        const parsed = parseKeyRecord(text);
        if ("record" in parsed) {
          const { id, customer_id, tier } = parsed.record;
          records.set(id, { keyId: id, customerId: customer_id, tier });
        }
      });
    }
    if (this.cache.size + missing.length > this.maxEntries) this.cache.clear();
    for (const subject of missing) {
      const value = records.get(aliasTargets.get(subject) ?? subject) ?? null;
      answers.set(subject, value);
      this.cache.set(subject, { value, at: now });
    }
    return answers;
  }
}
