import { loadTiers } from "@keymeter/shared/billing";
import {
  answersWithin,
  createLogger,
  createMetricsServer,
  listen,
  parseConfig,
  runService,
} from "@keymeter/shared/runtime";
import { clickHouseConnection, createClickHouse, createRedis, redisKeys } from "@keymeter/shared/stores";
import { quotaWorkerConfigSchema } from "./config";
import { QuotaWorker } from "./quota-worker";

runService("quota-worker", async () => {
  const config = parseConfig(quotaWorkerConfigSchema);
  const logger = createLogger("quota-worker", config.LOG_LEVEL);
  const tiers = loadTiers(config.TIERS_FILE);
  const redis = createRedis(config.REDIS_URL, { logger, name: "redis" });
  const subscriber = createRedis(config.REDIS_URL, { logger, name: "redis-subscriber" });
  const bullConnection = createRedis(config.REDIS_URL, { forBullMQ: true, logger, name: "redis-bullmq" });
  const clickhouse = createClickHouse(clickHouseConnection(config), { requestTimeoutMs: 20_000 });
  const worker = new QuotaWorker({
    redis,
    subscriber,
    bullConnection,
    clickhouse,
    keys: redisKeys(config.REDIS_KEY_PREFIX),
    tiers,
    logger,
    concurrency: config.QUOTA_WORKER_CONCURRENCY,
    sweepIntervalMs: config.QUOTA_SWEEP_INTERVAL_MS,
    thresholds: config.QUOTA_WEBHOOK_THRESHOLDS,
    webhookAttempts: config.QUOTA_WEBHOOK_ATTEMPTS,
    webhookBackoffMs: config.QUOTA_WEBHOOK_BACKOFF_MS,
    webhookTimeoutMs: config.QUOTA_WEBHOOK_TIMEOUT_MS,
  });
  const metricsServer = createMetricsServer(worker.metrics.registry, async () => ({
    redis: redis.status === "ready" && bullConnection.status === "ready",
    clickhouse: await answersWithin(1_000, async () => (await clickhouse.ping()).success),
  }));
  const port = await listen(metricsServer, config.METRICS_HOST, config.METRICS_PORT, "METRICS_PORT");
  await worker.start();
  logger.info({ metricsPort: port }, "quota worker listening for metrics");

  return async () => {
    logger.info("stopping: finishing the jobs in hand");
    await worker.stop();
    metricsServer.close();
    await clickhouse.close();
    await Promise.all([redis.quit(), bullConnection.quit()]);
  };
});
