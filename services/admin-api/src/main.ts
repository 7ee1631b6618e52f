import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { bindPort, createLogger, parseConfig, runService } from "@keymeter/shared/runtime";
import { clickHouseConnection, runMigrations } from "@keymeter/shared/stores";
import { buildAdminApp } from "./app";
import { adminConfigSchema } from "./config";
import { createRegistryFromConfig } from "./registry";

runService("admin-api", async () => {
  const config = parseConfig(adminConfigSchema);
  const logger = createLogger("admin-api", config.LOG_LEVEL);
  if (config.MIGRATE_ON_START) await runMigrations(clickHouseConnection(config), { dir: MIGRATIONS_DIR, logger });
  const deps = createRegistryFromConfig(config, logger);
  if (config.ADMIN_BOOTSTRAP_TOKEN) {
    logger.warn("ADMIN_BOOTSTRAP_TOKEN is set: create an admin key, then unset it");
  }
  const app = buildAdminApp({
    registry: deps.registry,
    tiers: deps.tiers,
    ...(deps.quota ? { quota: deps.quota } : {}),
    logger,
    ...(deps.billing ? { billing: deps.billing() } : {}),
    ...(deps.health ? { health: deps.health } : {}),
    ...(config.ADMIN_BOOTSTRAP_TOKEN ? { bootstrapToken: config.ADMIN_BOOTSTRAP_TOKEN } : {}),
  });
  let address: string;
  try {
    address = await bindPort(config.ADMIN_HOST, config.ADMIN_PORT, "ADMIN_PORT", () =>
      app.listen({ host: config.ADMIN_HOST, port: config.ADMIN_PORT }),
    );
  } catch (error) {
    await deps.close();
    throw error;
  }
  logger.info({ address }, "admin api listening");
  return async () => {
    await app.close();
    await deps.close();
  };
});
