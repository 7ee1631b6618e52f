import { ClickHouseKeyMirror, KeyRegistry } from "@keymeter/shared/api-keys";
import { loadTiers, type TierCatalog } from "@keymeter/shared/billing";
import type { HealthProbe, Logger } from "@keymeter/shared/runtime";
import { clickHouseConnection, createClickHouse, createRedis, redisKeys } from "@keymeter/shared/stores";
import type { RegistryConfig } from "./config";

export interface RegistryDeps {
  registry: KeyRegistry;
  tiers: TierCatalog;
  /** Redis, which the registry needs for every call (the ClickHouse mirror is optional). */
  health?: HealthProbe;
  close(): Promise<void>;
}

/** The key registry on Redis, mirrored to ClickHouse, as the config describes it. */
export function createRegistryFromConfig(config: RegistryConfig, logger: Logger): RegistryDeps {
  const tiers = loadTiers(config.TIERS_FILE);
  const redis = createRedis(config.REDIS_URL, { logger });
  const clickhouse = createClickHouse(clickHouseConnection(config), { requestTimeoutMs: 5_000 });
  const registry = new KeyRegistry({
    redis,
    keys: redisKeys(config.REDIS_KEY_PREFIX),
    tiers,
    logger,
    mirror: new ClickHouseKeyMirror(clickhouse),
    secretPrefix: config.KEY_SECRET_PREFIX,
    defaultGraceMs: config.KEY_ROTATION_GRACE_SECONDS * 1000,
  });
  return {
    registry,
    tiers,
    health: () => ({ redis: redis.status === "ready" }),
    close: async () => {
      await Promise.all([redis.quit(), clickhouse.close()]);
    },
  };
}
