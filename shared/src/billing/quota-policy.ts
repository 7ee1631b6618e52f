import type { QuotaOverride } from "./quota-overrides";
import type { Tier } from "./tiers";

/** What a key may use per period and what happens past it. */
export interface QuotaLimit {
  /** Units per period; null: unlimited. */
  quota: number | null;
  overage: Tier["overage"];
  /** Where the quota comes from. */
  source: "tier" | "override";
}

/** The tier's quota, or the key's override when it has one. */
export function quotaLimit(tier: Tier, override: QuotaOverride | undefined): QuotaLimit {
  if (override) return { quota: override.monthly_quota, overage: tier.overage, source: "override" };
  return { quota: tier.monthly_quota, overage: tier.overage, source: "tier" };
}

/** The decision for month-to-date `used` units under `limit`. */
export interface QuotaVerdict {
  /** True when the gateway must refuse the key: a `block` quota is used up (used >= quota). */
  block: boolean;
  /** Units left before the quota; null when unlimited. */
  remaining: number | null;
  /** Units over the quota (billed under `bill`; 0 under `block` as requests are refused). */
  overage: number;
  /** Usage as a percentage of the quota (null when unlimited). */
  percent: number | null;
}

export function quotaVerdict(limit: QuotaLimit, used: number): QuotaVerdict {
  if (limit.quota === null) return { block: false, remaining: null, overage: 0, percent: null };
  const over = Math.max(0, used - limit.quota);
  return {
    block: limit.overage === "block" && used >= limit.quota,
    remaining: Math.max(0, limit.quota - used),
    overage: over,
    percent: Math.floor((used * 100) / limit.quota),
  };
}

/** Thresholds (percent of the quota) that `used` has reached, lowest first. */
export function reachedThresholds(limit: QuotaLimit, used: number, thresholds: readonly number[]): number[] {
  if (limit.quota === null) return [];
  const quota = limit.quota;
  return [...thresholds].sort((a, b) => a - b).filter((percent) => used * 100 >= percent * quota);
}

/** Units at which the lowest threshold is reached: the point from which the aggregator asks for checks. */
export function checkFrom(limit: QuotaLimit, thresholds: readonly number[]): number | undefined {
  if (limit.quota === null) return undefined;
  const lowest = Math.min(100, ...thresholds);
  return Math.ceil((lowest * limit.quota) / 100);
}
