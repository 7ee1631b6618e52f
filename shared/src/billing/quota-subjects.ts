import { type KeyRecord, keyRecordSchema, keyState } from "../api-keys/key-record";
import { mgetMany, type Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";
import { DEFAULT_TIME_ZONE, type WebhookEndpoint } from "./customer-record";
import type { CustomerRegistry } from "./customer-registry";
import type { QuotaOverrides } from "./quota-overrides";
import { type QuotaLimit, quotaLimit } from "./quota-policy";
import type { TierCatalog } from "./tiers";

/** The fields of a key record quotas use: parsing only these keeps a 100,000-key sweep cheap. */
const quotaKeyFieldsSchema = keyRecordSchema.pick({
  id: true,
  customer_id: true,
  tier: true,
  state: true,
  expires_at: true,
});
type QuotaKeyFields = Pick<KeyRecord, "id" | "customer_id" | "tier" | "state" | "expires_at">;

/** Everything quota enforcement needs to know about one key. */
export interface QuotaSubject {
  keyId: string;
  customerId: string;
  tier: string;
  /** Undefined when the key's tier is not configured (the gateway refuses such keys anyway). */
  limit: QuotaLimit | undefined;
  /** The customer's zone; UTC for a key whose customer has no record. */
  timeZone: string;
  webhooks: WebhookEndpoint[];
  /** False for revoked and expired keys (their flags are cleared, no webhooks). */
  active: boolean;
}

export interface QuotaSubjectsOptions {
  redis: Redis;
  keys: RedisKeys;
  tiers: TierCatalog;
  customers: CustomerRegistry;
  overrides: QuotaOverrides;
  now?: () => number;
}

/** Loads quota subjects in bulk: key records, customer records and overrides, a round trip each per 1,000 keys. */
export class QuotaSubjects {
  private readonly options: QuotaSubjectsOptions;

  constructor(options: QuotaSubjectsOptions) {
    this.options = options;
  }

  get tiers(): TierCatalog {
    return this.options.tiers;
  }

  async load(keyIds: readonly string[]): Promise<Map<string, QuotaSubject>> {
    const { redis, keys } = this.options;
    const records: QuotaKeyFields[] = [];
    const raw = await mgetMany(
      redis,
      keyIds.map((id) => keys.keyRecord(id)),
    );
    for (const value of raw) {
      if (value === null) continue;
      let json: unknown;
      try {
        json = JSON.parse(value);
      } catch {
        continue;
      }
      const parsed = quotaKeyFieldsSchema.safeParse(json);
      if (parsed.success) records.push(parsed.data);
    }
    return this.fromRecords(records);
  }

  async fromRecords(records: readonly QuotaKeyFields[]): Promise<Map<string, QuotaSubject>> {
    const customers = await this.options.customers.getMany(records.map((record) => record.customer_id));
    const overrides = await this.options.overrides.getMany(records.map((record) => record.id));
    const now = (this.options.now ?? Date.now)();
    const subjects = new Map<string, QuotaSubject>();
    for (const record of records) {
      const tier = this.options.tiers.get(record.tier);
      const customer = customers.get(record.customer_id);
      subjects.set(record.id, {
        keyId: record.id,
        customerId: record.customer_id,
        tier: record.tier,
        limit: tier ? quotaLimit(tier, overrides.get(record.id)) : undefined,
        timeZone: customer?.time_zone ?? DEFAULT_TIME_ZONE,
        webhooks: customer?.webhooks ?? [],
        active: keyState(record, now) === "active",
      });
    }
    return subjects;
  }

  /** Every registered key id, in chunks (the sweep's work list). */
  async *allKeyIds(chunk = 5000): AsyncGenerator<string[]> {
    for (let start = 0; ; start += chunk) {
      const ids = await this.options.redis.zrange(this.options.keys.keyIds, start, start + chunk - 1);
      if (ids.length === 0) return;
      yield ids;
      if (ids.length < chunk) return;
    }
  }

  /** One customer's key ids. */
  async customerKeyIds(customerId: string): Promise<string[]> {
    return this.options.redis.zrange(this.options.keys.customerKeyIds(customerId), 0, -1);
  }
}
