import {
  ClickHouseUsageReader,
  CustomerRegistry,
  QuotaOverrides,
  QuotaStatusService,
  QuotaSubjects,
  type TierCatalog,
} from "@keymeter/shared/billing";
import type { Logger } from "@keymeter/shared/runtime";
import type { ClickHouseClient, Redis, RedisKeys } from "@keymeter/shared/stores";
import type { QuotaRoutesDeps } from "./quota-routes";

/** Customers, overrides and quota status on the registry's connections (admin API and CLI). */
export function createQuotaDeps(options: {
  redis: Redis;
  clickhouse: ClickHouseClient;
  keys: RedisKeys;
  tiers: TierCatalog;
  logger: Logger;
}): QuotaRoutesDeps {
  const { redis, keys, tiers, logger } = options;
  const customers = new CustomerRegistry({ redis, keys, logger });
  const overrides = new QuotaOverrides(redis, keys);
  const status = new QuotaStatusService({
    subjects: new QuotaSubjects({ redis, keys, tiers, customers, overrides }),
    usage: new ClickHouseUsageReader(options.clickhouse),
    redis,
    keys,
  });
  return { customers, overrides, status };
}
