import { z } from "zod";
import type { TierCatalog } from "../billing/tiers";
import { describeIssues } from "../runtime/describe-issues";
import { AppError } from "../runtime/errors";
import type { Logger } from "../runtime/logger";
import { malformedStringPath } from "../runtime/well-formed";
import type { Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";
import { generateKeyId, generateSecret, hashSecret, KEY_ID, secretHint } from "./key-format";
import type { KeyMirror } from "./key-mirror";
import {
  type CreateKeyInput,
  createKeyInputSchema,
  type KeyRecord,
  type KeyView,
  keyView,
  parseKeyRecord,
  type UpdateKeyInput,
  updateKeyInputSchema,
} from "./key-record";

/** The message published on `keyChangedChannel` after a key changes. */
export const keyChangedMessageSchema = z.object({ keyId: z.string(), hashes: z.array(z.string()) });
export type KeyChangedMessage = z.infer<typeof keyChangedMessageSchema>;

export interface KeyRegistryOptions {
  redis: Redis;
  keys: RedisKeys;
  tiers: TierCatalog;
  logger: Logger;
  /** Where key metadata is mirrored (ClickHouse `api_keys`); a mirror failure never fails the write. */
  mirror?: KeyMirror;
  /** The secret's prefix, `km` in `km_live_...`. */
  secretPrefix?: string;
  /** How long a rotated-out secret keeps working, unless a rotation says otherwise. */
  defaultGraceMs?: number;
  now?: () => number;
}

/** A created or rotated key: the secret is here once and nowhere else. */
export interface IssuedKey {
  key: KeyView;
  secret: string;
  /** False when the ClickHouse mirror failed; `keymeter keys sync` repairs it. */
  mirrored: boolean;
}

/**
 * Writes the record only if its stored version is the expected one (0: only if absent) and
 * every alias it claims is free or already its own; sets or expires hash index entries,
 * claims and releases aliases, indexes the id and publishes the change, atomically.
 * KEYS: record, id index, customer's id index, hash keys..., aliases to claim..., aliases to
 * release... ARGV: expected version, record JSON, channel, message, key id, created score,
 * hash key count, claimed alias count, then one TTL per hash key (ms; 0 keeps forever, -1
 * deletes). Returns 1 (written), 0 (version changed), -1 (no such key), or
 * {-2, i, owner} when the i-th claimed alias (0-based) belongs to another key.
 */
const APPLY_SCRIPT = `
local current = redis.call('GET', KEYS[1])
local expected = tonumber(ARGV[1])
if expected == 0 then
  if current then return 0 end
else
  if not current then return -1 end
  if cjson.decode(current).version ~= expected then return 0 end
end
local hashes = tonumber(ARGV[7])
local claims = tonumber(ARGV[8])
local firstAlias = 4 + hashes
for i = firstAlias, firstAlias + claims - 1 do
  local owner = redis.call('GET', KEYS[i])
  if owner and owner ~= ARGV[5] then return {-2, i - firstAlias, owner} end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[5])
for i = 4, firstAlias - 1 do
  local ttl = tonumber(ARGV[5 + i])
  if ttl < 0 then
    redis.call('DEL', KEYS[i])
  elseif ttl == 0 then
    redis.call('SET', KEYS[i], ARGV[5])
  else
    redis.call('SET', KEYS[i], ARGV[5], 'PX', ttl)
  end
end
for i = firstAlias, firstAlias + claims - 1 do
  redis.call('SET', KEYS[i], ARGV[5])
end
for i = firstAlias + claims, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[5] then redis.call('DEL', KEYS[i]) end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`;

/** What a sync could not write to the mirror, per key. */
export interface SyncFailure {
  key_id: string;
  error: string;
}

/** The outcome of {@link KeyRegistry.sync}: how many keys were written, and which were not. */
export interface SyncReport {
  mirrored: number;
  failed: SyncFailure[];
}

interface HashOp {
  hash: string;
  /** ms; 0 keeps forever, -1 deletes. */
  ttlMs: number;
}

/**
 * The API key registry: records in Redis (AOF on), metadata mirrored to ClickHouse. Every
 * change is one atomic script that also tells every gateway through pub/sub.
 */
export class KeyRegistry {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly tiers: TierCatalog;
  private readonly logger: Logger;
  private readonly mirror: KeyMirror | undefined;
  private readonly secretPrefix: string;
  private readonly defaultGraceMs: number;
  private readonly now: () => number;

  constructor(options: KeyRegistryOptions) {
    this.redis = options.redis;
    this.keys = options.keys;
    this.tiers = options.tiers;
    this.logger = options.logger;
    this.mirror = options.mirror;
    this.secretPrefix = options.secretPrefix ?? "km";
    this.defaultGraceMs = options.defaultGraceMs ?? 24 * 3600_000;
    this.now = options.now ?? Date.now;
  }

  get redisKeys(): RedisKeys {
    return this.keys;
  }

  /** Creates a key; the returned secret is never stored or logged. */
  async create(input: CreateKeyInput): Promise<IssuedKey> {
    const parsed = parseInput(createKeyInputSchema, input);
    this.checkTier(parsed.tier);
    const secret = generateSecret(this.secretPrefix, parsed.env);
    const hash = hashSecret(secret);
    const at = new Date(this.now()).toISOString();
    const record: KeyRecord = {
      id: generateKeyId(),
      ...parsed,
      state: "active",
      created_at: at,
      updated_at: at,
      rotated_at: null,
      revoked_at: null,
      hint: secretHint(secret),
      version: 1,
      secret_hashes: [{ hash, valid_until: null }],
      aliases: parsed.aliases,
    };
    await this.apply(record, 0, [{ hash, ttlMs: 0 }]);
    this.logger.info({ key_id: record.id, customer_id: record.customer_id, tier: record.tier }, "api key created");
    const mirrored = await this.mirrorSafely(record);
    return { key: keyView(record, this.now()), secret, mirrored };
  }

  /** The stored record, or undefined. */
  async get(keyId: string): Promise<KeyRecord | undefined> {
    if (!KEY_ID.test(keyId)) return undefined;
    return this.parseRecord(await this.redis.get(this.keys.keyRecord(keyId)));
  }

  /** A key's public view; not_found when there is no such key. */
  async show(keyId: string): Promise<KeyView> {
    return keyView(await this.require(keyId), this.now());
  }

  /** Keys, newest first, optionally of one customer (its own index: no scan of all keys). */
  async list(options: { customerId?: string; limit?: number; offset?: number } = {}): Promise<KeyView[]> {
    const limit = options.limit ?? 100;
    const offset = options.offset ?? 0;
    const index = options.customerId === undefined ? this.keys.keyIds : this.keys.customerKeyIds(options.customerId);
    const ids = await this.redis.zrevrange(index, offset, offset + limit - 1);
    if (ids.length === 0) return [];
    const raw = await this.redis.mget(ids.map((id) => this.keys.keyRecord(id)));
    return raw.flatMap((value) => {
      const record = this.parseRecord(value);
      return record ? [keyView(record, this.now())] : [];
    });
  }

  /** Changes tier, name, scope, routes, IP allowlist or expiry; gateways see it within a second. */
  async update(keyId: string, input: UpdateKeyInput): Promise<KeyView> {
    const patch = parseInput(updateKeyInputSchema, input);
    if (patch.tier !== undefined) this.checkTier(patch.tier);
    const record = await this.change(keyId, (current) => {
      // A revoked key may still give up its aliases, so that another key can take them.
      const onlyAliases = Object.keys(patch).every((field) => field === "aliases");
      if (current.state === "revoked" && !onlyAliases) {
        throw new AppError("conflict", `key ${keyId} is revoked and cannot change`);
      }
      return { record: { ...current, ...patch }, hashOps: [] };
    });
    this.logger.info({ key_id: keyId, fields: Object.keys(patch) }, "api key updated");
    await this.mirrorSafely(record);
    return keyView(record, this.now());
  }

  /**
   * Issues a new secret. The old one keeps working for `graceMs` (the registry's default
   * when not given; 0 ends it at once), then its hash index entry expires.
   */
  async rotate(keyId: string, options: { graceMs?: number } = {}): Promise<IssuedKey> {
    const graceMs = options.graceMs ?? this.defaultGraceMs;
    if (!Number.isInteger(graceMs) || graceMs < 0) {
      throw new AppError("bad_request", "grace period must be a whole, non-negative number of milliseconds");
    }
    let secret = "";
    const record = await this.change(keyId, (current) => {
      if (current.state === "revoked") throw new AppError("conflict", `key ${keyId} is revoked and cannot be rotated`);
      secret = generateSecret(this.secretPrefix, current.env);
      const now = this.now();
      const hash = hashSecret(secret);
      const until = new Date(now + graceMs).toISOString();
      const hashOps: HashOp[] = [{ hash, ttlMs: 0 }];
      const kept = current.secret_hashes.flatMap((entry) => {
        if (entry.valid_until === null) {
          hashOps.push({ hash: entry.hash, ttlMs: graceMs > 0 ? graceMs : -1 });
          return graceMs > 0 ? [{ hash: entry.hash, valid_until: until }] : [];
        }
        // An earlier rotation's secret keeps its own (earlier or equal) end; once past, it goes.
        return Date.parse(entry.valid_until) > now ? [entry] : [];
      });
      return {
        record: {
          ...current,
          rotated_at: new Date(now).toISOString(),
          hint: secretHint(secret),
          secret_hashes: [{ hash, valid_until: null }, ...kept],
        },
        hashOps,
      };
    });
    this.logger.info({ key_id: keyId, grace_ms: graceMs }, "api key rotated");
    const mirrored = await this.mirrorSafely(record);
    return { key: keyView(record, this.now()), secret, mirrored };
  }

  /** Revokes a key for good; every gateway refuses it within a second. Revoking twice is a no-op. */
  async revoke(keyId: string): Promise<KeyView> {
    const existing = await this.require(keyId);
    if (existing.state === "revoked") return keyView(existing, this.now());
    const record = await this.change(keyId, (current) => ({
      record: { ...current, state: "revoked", revoked_at: new Date(this.now()).toISOString() },
      hashOps: [],
    }));
    this.logger.info({ key_id: keyId }, "api key revoked");
    await this.mirrorSafely(record);
    return keyView(record, this.now());
  }

  /** The record a secret hash points at (a gateway's cache miss). Checks nothing else. */
  async findByHash(hash: string): Promise<KeyRecord | undefined> {
    const keyId = await this.redis.get(this.keys.keyByHash(hash));
    return keyId ? this.get(keyId) : undefined;
  }

  /**
   * Writes every key's metadata to the mirror again: the repair after mirror failures. A
   * batch the mirror refuses is retried key by key, so one bad record (or one the mirror
   * cannot take) is reported in `failed` and the others are still written.
   */
  async sync(): Promise<SyncReport> {
    if (!this.mirror) throw new AppError("service_unavailable", "no mirror configured");
    const mirror = this.mirror;
    const report: SyncReport = { mirrored: 0, failed: [] };
    const batch = 500;
    for (let start = 0; ; start += batch) {
      const ids = await this.redis.zrange(this.keys.keyIds, start, start + batch - 1);
      if (ids.length === 0) break;
      const raw = await this.redis.mget(ids.map((id) => this.keys.keyRecord(id)));
      const views: KeyView[] = [];
      raw.forEach((value, i) => {
        const record = this.parseRecord(value);
        if (record) views.push(keyView(record, this.now()));
        else report.failed.push({ key_id: ids[i] ?? "", error: "the record in Redis is missing or unreadable" });
      });
      try {
        await mirror.upsert(views);
        report.mirrored += views.length;
      } catch {
        // Find the keys the mirror refuses; the rest of the batch still goes in.
        for (const view of views) {
          try {
            await mirror.upsert([view]);
            report.mirrored++;
          } catch (error) {
            report.failed.push({ key_id: view.id, error: (error as Error).message.slice(0, 300) });
          }
        }
      }
    }
    if (report.failed.length > 0) {
      this.logger.warn(
        { keys: report.mirrored, failed: report.failed.length, first: report.failed[0] },
        "api keys mirrored, some could not be written",
      );
    } else {
      this.logger.info({ keys: report.mirrored }, "api keys mirrored");
    }
    return report;
  }

  private checkTier(tier: string): void {
    if (!this.tiers.has(tier)) {
      throw new AppError("bad_request", `tier: unknown tier "${tier}" (known: ${this.tiers.names().join(", ")})`);
    }
  }

  private async require(keyId: string): Promise<KeyRecord> {
    const record = await this.get(keyId);
    if (!record) throw new AppError("not_found", `no API key ${KEY_ID.test(keyId) ? keyId : "with that id"}`);
    return record;
  }

  /** Read, modify, compare-and-set on the version; retried when another writer got there first. */
  private async change(
    keyId: string,
    modify: (current: KeyRecord) => { record: KeyRecord; hashOps: HashOp[] },
  ): Promise<KeyRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.require(keyId);
      const { record, hashOps } = modify(current);
      const next: KeyRecord = {
        ...record,
        updated_at: new Date(this.now()).toISOString(),
        version: current.version + 1,
      };
      if (await this.apply(next, current.version, hashOps, current)) return next;
    }
    throw new AppError("conflict", `key ${keyId} is being changed concurrently; try again`, { retryable: true });
  }

  private async apply(record: KeyRecord, expectedVersion: number, hashOps: HashOp[], previous?: KeyRecord) {
    const hashes = new Set([...record.secret_hashes, ...(previous?.secret_hashes ?? [])].map((entry) => entry.hash));
    const message: KeyChangedMessage = { keyId: record.id, hashes: [...hashes] };
    const claimed = record.aliases;
    const released = (previous?.aliases ?? []).filter((alias) => !claimed.includes(alias));
    const result = await this.redis.eval(
      APPLY_SCRIPT,
      3 + hashOps.length + claimed.length + released.length,
      this.keys.keyRecord(record.id),
      this.keys.keyIds,
      this.keys.customerKeyIds(record.customer_id),
      ...hashOps.map((op) => this.keys.keyByHash(op.hash)),
      ...claimed.map((alias) => this.keys.keyAlias(alias)),
      ...released.map((alias) => this.keys.keyAlias(alias)),
      expectedVersion,
      JSON.stringify(record),
      this.keys.keyChangedChannel,
      JSON.stringify(message),
      record.id,
      Date.parse(record.created_at),
      hashOps.length,
      claimed.length,
      ...hashOps.map((op) => op.ttlMs),
    );
    if (Array.isArray(result)) {
      const alias = claimed[Number(result[1])] ?? "";
      throw new AppError("conflict", `aliases: "${alias}" already belongs to key ${String(result[2])}`);
    }
    if (result === -1) throw new AppError("not_found", `no API key ${record.id}`);
    return result === 1;
  }

  private parseRecord(value: string | null): KeyRecord | undefined {
    if (value === null) return undefined;
    const parsed = parseKeyRecord(value);
    if ("problem" in parsed) {
      this.logger.error({ problem: parsed.problem }, "unreadable api key record in redis");
      return undefined;
    }
    return parsed.record;
  }

  private async mirrorSafely(record: KeyRecord): Promise<boolean> {
    if (!this.mirror) return true;
    try {
      await this.mirror.upsert([keyView(record, this.now())]);
      return true;
    } catch (error) {
      this.logger.warn(
        { key_id: record.id, err: (error as Error).message },
        "api key mirror to clickhouse failed; run 'keymeter keys sync' to repair",
      );
      return false;
    }
  }
}

function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const malformed = malformedStringPath(input);
  if (malformed) throw new AppError("bad_request", `${malformed}: not well-formed Unicode (a lone surrogate)`);
  const result = schema.safeParse(input);
  if (!result.success) throw new AppError("bad_request", describeIssues(result.error));
  return result.data;
}
