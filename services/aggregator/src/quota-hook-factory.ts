import { CustomerRegistry, loadTiers, QuotaOverrides, QuotaSubjects, UsageCounters } from "@keymeter/shared/billing";
import { QuotaCheckQueue, queueConnection } from "@keymeter/shared/jobs";
import type { Logger } from "@keymeter/shared/runtime";
import { createRedis, type Redis, redisKeys } from "@keymeter/shared/stores";
import type { AggregatorConfig } from "./config";
import { QuotaHook } from "./quota-hook";

/** The quota hook as the aggregator's config describes it, with the BullMQ connection it owns. */
export function createQuotaHook(
  config: AggregatorConfig,
  redis: Redis,
  logger: Logger,
): { hook: QuotaHook; close(): Promise<void> } {
  const keys = redisKeys(config.REDIS_KEY_PREFIX);
  const bullConnection = createRedis(config.REDIS_URL, { forBullMQ: true, logger, name: "redis-bullmq" });
  const checks = new QuotaCheckQueue(queueConnection(bullConnection, keys));
  const hook = new QuotaHook({
    subjects: new QuotaSubjects({
      redis,
      keys,
      tiers: loadTiers(config.TIERS_FILE),
      customers: new CustomerRegistry({ redis, keys, logger }),
      overrides: new QuotaOverrides(redis, keys),
    }),
    counters: new UsageCounters(redis, keys),
    checks,
    checkFromPercent: config.QUOTA_CHECK_FROM_PERCENT,
  });
  return {
    hook,
    close: async () => {
      await checks.close();
      await bullConnection.quit();
    },
  };
}
