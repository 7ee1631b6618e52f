import { AppError } from "../runtime/errors";
import type { Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";
import { type Clock, periodOf, systemClock } from "./periods";
import { quotaVerdict } from "./quota-policy";
import type { QuotaSubject, QuotaSubjects } from "./quota-subjects";
import type { UsageReader } from "./usage-reader";

/** A key's quota for its current period, as the admin API and the CLI show it. */
export interface KeyQuotaStatus {
  key_id: string;
  customer_id: string;
  tier: string;
  time_zone: string;
  period: { id: string; start: string; end: string };
  /** Month-to-date billable units (ClickHouse). */
  used: number;
  /** Null: unlimited. */
  quota: number | null;
  quota_source: "tier" | "override" | null;
  overage_policy: "block" | "bill" | null;
  remaining: number | null;
  /** Units over the quota: billed under `bill`. */
  overage: number;
  /** True while gateways refuse the key (`quota:flag:<key_id>` is set). */
  flagged: boolean;
  flagged_until: string | null;
}

export interface CustomerQuotaStatus {
  customer_id: string;
  keys: KeyQuotaStatus[];
  used: number;
  overage: number;
}

export interface QuotaStatusOptions {
  subjects: QuotaSubjects;
  usage: UsageReader;
  redis: Redis;
  keys: RedisKeys;
  now?: Clock;
}

/** Month-to-date usage against quotas, read from ClickHouse (the truth) and the flags in Redis. */
export class QuotaStatusService {
  private readonly now: Clock;

  constructor(private readonly options: QuotaStatusOptions) {
    this.now = options.now ?? systemClock;
  }

  async keyStatus(keyId: string): Promise<KeyQuotaStatus> {
    const subject = (await this.options.subjects.load([keyId])).get(keyId);
    if (!subject) throw new AppError("not_found", `no API key ${keyId}`);
    return this.statusOf(subject);
  }

  async customerStatus(customerId: string): Promise<CustomerQuotaStatus> {
    const ids = await this.options.subjects.customerKeyIds(customerId);
    if (ids.length === 0) throw new AppError("not_found", `no keys for customer ${customerId.slice(0, 128)}`);
    const subjects = await this.options.subjects.load(ids);
    const keys = await Promise.all([...subjects.values()].map((subject) => this.statusOf(subject)));
    return {
      customer_id: customerId,
      keys,
      used: keys.reduce((sum, key) => sum + key.used, 0),
      overage: keys.reduce((sum, key) => sum + key.overage, 0),
    };
  }

  private async statusOf(subject: QuotaSubject): Promise<KeyQuotaStatus> {
    const period = periodOf(this.now(), subject.timeZone);
    const [used, flag] = await Promise.all([
      this.options.usage.keyUnits(subject.keyId, period),
      this.options.redis.pttl(this.options.keys.quotaFlag(subject.keyId)),
    ]);
    const verdict = subject.limit ? quotaVerdict(subject.limit, used) : undefined;
    return {
      key_id: subject.keyId,
      customer_id: subject.customerId,
      tier: subject.tier,
      time_zone: subject.timeZone,
      period: { id: period.id, start: new Date(period.start).toISOString(), end: new Date(period.end).toISOString() },
      used,
      quota: subject.limit?.quota ?? null,
      quota_source: subject.limit?.source ?? null,
      overage_policy: subject.limit?.overage ?? null,
      remaining: verdict?.remaining ?? null,
      overage: verdict?.overage ?? 0,
      flagged: flag !== -2,
      flagged_until: flag > 0 ? new Date(Date.now() + flag).toISOString() : null,
    };
  }
}
