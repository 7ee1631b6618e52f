import { IpAllowlist, type KeyRecord, keyChangedMessageSchema, parseKeyRecord } from "@keymeter/shared/api-keys";
import { type Logger, RateLimitedLog } from "@keymeter/shared/runtime";
import type { Redis, RedisKeys } from "@keymeter/shared/stores";

/** A key as a gateway holds it: the record, its parsed allowlist and its quota flag. */
export interface CachedKey {
  record: KeyRecord;
  allowlist: IpAllowlist;
  /** Epoch ms until which the key is flagged over quota; 0 when it is not. */
  quotaFlaggedUntil: number;
  expiresAt: number;
}

export interface KeyCacheOptions {
  /** Commands (GET, pipelines). */
  redis: Redis;
  /** A connection of its own: a subscribed connection can do nothing else. */
  subscriber: Redis;
  keys: RedisKeys;
  logger: Logger;
  /** How long a key record is trusted without a change message; pub/sub makes changes immediate. */
  ttlMs?: number;
  /** How long an unknown secret hash is remembered, so guessing keys cannot hammer Redis. */
  negativeTtlMs?: number;
  now?: () => number;
}

interface HashEntry {
  keyId: string | null;
  expiresAt: number;
}

/**
 * The local cache of key records, by secret hash. A hit costs no Redis round trip. Key
 * changes (revocation, rotation, tier) and quota flag changes arrive by pub/sub and drop the
 * entries they touch; if the subscription drops, everything is dropped, since messages may
 * have been missed.
 */
export class KeyCache {
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly keys: RedisKeys;
  private readonly logger: Logger;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly now: () => number;
  private readonly hashes = new Map<string, HashEntry>();
  private readonly byId = new Map<string, CachedKey>();
  private readonly loading = new Map<string, Promise<CachedKey | undefined>>();
  /** Bumped on every invalidation, so a load that raced one does not store stale data. */
  private generation = 0;

  constructor(options: KeyCacheOptions) {
    this.redis = options.redis;
    this.subscriber = options.subscriber;
    this.keys = options.keys;
    this.logger = options.logger;
    this.ttlMs = options.ttlMs ?? 30_000;
    this.negativeTtlMs = options.negativeTtlMs ?? 5_000;
    this.now = options.now ?? Date.now;
  }

  /** Subscribes to key and quota changes; resolves once the subscription is in place. */
  async start(): Promise<void> {
    if (this.subscriber.status !== "ready") {
      await new Promise<void>((resolve, reject) => {
        const onReady = () => {
          this.subscriber.off("error", onError);
          resolve();
        };
        const onError = (error: Error) => {
          this.subscriber.off("ready", onReady);
          reject(error);
        };
        this.subscriber.once("ready", onReady);
        this.subscriber.once("error", onError);
      });
    }
    // Once per 10 s with a count: ioredis reports every reconnect attempt.
    const errors = new RateLimitedLog(this.logger);
    this.subscriber.on("error", (error: Error) =>
      errors.log("warn", "error", { err: error.message }, "key change subscription: redis connection error"),
    );
    this.subscriber.on("message", (channel: string, message: string) => this.onMessage(channel, message));
    // After a reconnect, ioredis re-subscribes; changes published meanwhile were lost.
    this.subscriber.on("ready", () => this.clear());
    await this.subscriber.subscribe(this.keys.keyChangedChannel, this.keys.quotaFlagChannel);
  }

  /** The key a secret hash belongs to, from the cache or Redis; undefined for an unknown hash. */
  lookup(hash: string): CachedKey | undefined | Promise<CachedKey | undefined> {
    const now = this.now();
    const entry = this.hashes.get(hash);
    if (entry && entry.expiresAt > now) {
      if (entry.keyId === null) return undefined;
      const key = this.byId.get(entry.keyId);
      if (key && key.expiresAt > now) return key;
    }
    const pending = this.loading.get(hash);
    if (pending) return pending;
    const load: Promise<CachedKey | undefined> = this.load(hash).finally(() => {
      if (this.loading.get(hash) === load) this.loading.delete(hash);
    });
    this.loading.set(hash, load);
    return load;
  }

  /** Forgets everything (tests, reconnects). */
  clear(): void {
    this.generation++;
    this.loading.clear();
    this.hashes.clear();
    this.byId.clear();
  }

  get size(): number {
    return this.byId.size;
  }

  private async load(hash: string): Promise<CachedKey | undefined> {
    const generation = this.generation;
    const now = this.now();
    const known = this.hashes.get(hash);
    const keyId =
      known && known.expiresAt > now && known.keyId !== null
        ? known.keyId
        : await this.redis.get(this.keys.keyByHash(hash));
    if (keyId === null) {
      if (generation === this.generation) this.hashes.set(hash, { keyId: null, expiresAt: now + this.negativeTtlMs });
      return undefined;
    }
    const replies = await this.redis
      .pipeline()
      .get(this.keys.keyRecord(keyId))
      .get(this.keys.quotaFlag(keyId))
      .pttl(this.keys.quotaFlag(keyId))
      .exec();
    const [recordReply, flagReply, ttlReply] = replies ?? [];
    for (const reply of [recordReply, flagReply, ttlReply]) if (reply?.[0]) throw reply[0];
    const raw = recordReply?.[1];
    if (typeof raw !== "string") return undefined;
    const parsed = parseKeyRecord(raw);
    if ("problem" in parsed) {
      this.logger.error({ key_id: keyId, problem: parsed.problem }, "unreadable api key record in redis");
      return undefined;
    }
    const ttl = Number(ttlReply?.[1] ?? -2);
    const key: CachedKey = {
      record: parsed.record,
      allowlist: new IpAllowlist(parsed.record.ip_allowlist),
      quotaFlaggedUntil: typeof flagReply?.[1] === "string" ? (ttl > 0 ? now + ttl : Number.POSITIVE_INFINITY) : 0,
      expiresAt: now + this.ttlMs,
    };
    if (generation === this.generation) {
      this.hashes.set(hash, { keyId, expiresAt: key.expiresAt });
      this.byId.set(keyId, key);
    }
    return key;
  }

  private onMessage(channel: string, message: string): void {
    this.generation++;
    // Requests arriving from now on must not join a load that may have read the old record.
    this.loading.clear();
    if (channel === this.keys.quotaFlagChannel) {
      this.byId.delete(message);
      return;
    }
    if (channel !== this.keys.keyChangedChannel) return;
    const parsed = keyChangedMessageSchema.safeParse(parseJson(message));
    if (!parsed.success) {
      // Cannot tell what changed: drop everything rather than serve a revoked key.
      this.logger.warn("unreadable key change message; clearing the key cache");
      this.clear();
      return;
    }
    this.byId.delete(parsed.data.keyId);
    for (const hash of parsed.data.hashes) this.hashes.delete(hash);
  }
}

/** JSON.parse that answers undefined for malformed text: the schema check reports it. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
