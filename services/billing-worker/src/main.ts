import { loadTiers } from "@keymeter/shared/billing";
import { createBillingProvider } from "@keymeter/shared/billing/provider";
import { createLogger, createMetricsServer, listen, parseConfig, runService } from "@keymeter/shared/runtime";
import { clickHouseConnection, createClickHouse, createRedis, redisKeys } from "@keymeter/shared/stores";
import { BillingWorker } from "./billing-worker";
import { billingWorkerConfigSchema } from "./config";

runService("billing-worker", async () => {
  const config = parseConfig(billingWorkerConfigSchema);
  const logger = createLogger("billing-worker", config.LOG_LEVEL);
  const tiers = loadTiers(config.TIERS_FILE);
  const { provider, live } = createBillingProvider(config, { logger });
  const redis = createRedis(config.REDIS_URL);
  const bullConnection = createRedis(config.REDIS_URL, { forBullMQ: true });
  redis.on("error", (error: Error) => logger.warn({ err: error.message }, "redis connection error"));
  bullConnection.on("error", (error: Error) => logger.warn({ err: error.message }, "redis (bullmq) connection error"));
  const clickhouse = createClickHouse(clickHouseConnection(config), { requestTimeoutMs: 60_000 });
  const worker = new BillingWorker({
    redis,
    bullConnection,
    clickhouse,
    keys: redisKeys(config.REDIS_KEY_PREFIX),
    tiers,
    provider,
    live,
    logger,
    syncEveryMs: config.BILLING_SYNC_EVERY_MS,
    closeEveryMs: config.BILLING_CLOSE_EVERY_MS,
    closeSettleMs: config.BILLING_CLOSE_SETTLE_MS,
    closeGraceMs: config.BILLING_CLOSE_GRACE_MS,
    reconcileEveryMs: config.BILLING_RECONCILE_EVERY_MS,
    batchSize: config.BILLING_SYNC_BATCH,
    linkOnDemand: config.BILLING_LINK_ON_DEMAND,
  });
  const metricsServer = createMetricsServer(worker.metrics.registry, () => ({
    redis: redis.status === "ready" && bullConnection.status === "ready",
  }));
  const port = await listen(metricsServer, config.METRICS_HOST, config.METRICS_PORT, "METRICS_PORT");
  await worker.start();
  logger.info({ metricsPort: port, dry_run: !live }, "billing worker listening for metrics");

  return async () => {
    logger.info("stopping: finishing the runs in hand (progress is recorded per batch)");
    await worker.stop();
    metricsServer.close();
    await clickhouse.close();
    await Promise.all([redis.quit(), bullConnection.quit()]);
  };
});
