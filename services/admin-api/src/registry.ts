import { ClickHouseKeyMirror, KeyRegistry } from "@keymeter/shared/api-keys";
import { loadTiers, type TierCatalog } from "@keymeter/shared/billing";
import type { HealthProbe, Logger } from "@keymeter/shared/runtime";
import { clickHouseConnection, createClickHouse, createRedis, redisKeys } from "@keymeter/shared/stores";
import { type AdminBilling, adminBillingProvider, createAdminBilling } from "./billing";
import type { RegistryConfig } from "./config";
import { createQuotaDeps } from "./quota-deps";
import type { QuotaRoutesDeps } from "./quota-routes";

export interface RegistryDeps {
  registry: KeyRegistry;
  tiers: TierCatalog;
  /** Billing (setup, links, reconciliation), made on first use: key commands never build a Stripe client. */
  billing?: () => AdminBilling;
  /** Customers, quota overrides and quota status (absent: those commands are unavailable). */
  quota?: QuotaRoutesDeps;
  /** Redis, which the registry needs for every call (the ClickHouse mirror is optional). */
  health?: HealthProbe;
  close(): Promise<void>;
}

/** The key registry on Redis, mirrored to ClickHouse, as the config describes it. */
export function createRegistryFromConfig(config: RegistryConfig, logger: Logger): RegistryDeps {
  const tiers = loadTiers(config.TIERS_FILE);
  const redis = createRedis(config.REDIS_URL, { logger });
  const clickhouse = createClickHouse(clickHouseConnection(config), { requestTimeoutMs: 5_000 });
  // Reconciliation reads a month of usage: its own client, with more time than a mirror write's 5 s.
  let billingClickhouse: ReturnType<typeof createClickHouse> | undefined;
  const keys = redisKeys(config.REDIS_KEY_PREFIX);
  const registry = new KeyRegistry({
    redis,
    keys,
    tiers,
    logger,
    mirror: new ClickHouseKeyMirror(clickhouse),
    secretPrefix: config.KEY_SECRET_PREFIX,
    defaultGraceMs: config.KEY_ROTATION_GRACE_SECONDS * 1000,
  });
  let billing: AdminBilling | undefined;
  return {
    registry,
    tiers,
    billing: () => {
      if (!billing) {
        const { provider, live } = adminBillingProvider(config, logger);
        billingClickhouse = createClickHouse(clickHouseConnection(config), { requestTimeoutMs: 60_000 });
        billing = createAdminBilling({
          redis,
          clickhouse: billingClickhouse,
          keys,
          tiers,
          logger,
          provider,
          live,
          closeGraceMs: config.BILLING_CLOSE_GRACE_MS,
        });
      }
      return billing;
    },
    quota: createQuotaDeps({ redis, clickhouse, keys, tiers, logger }),
    health: () => ({ redis: redis.status === "ready" }),
    close: async () => {
      await Promise.all([redis.quit(), clickhouse.close(), billingClickhouse?.close()]);
    },
  };
}
