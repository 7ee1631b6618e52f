import {
  answersWithin,
  createLogger,
  createMetricsServer,
  listen,
  parseConfig,
  runService,
} from "@keymeter/shared/runtime";
import { Aggregator } from "./aggregator";
import { aggregatorOptions, connectAggregatorStores } from "./assemble";
import { aggregatorConfigSchema } from "./config";
import { createQuotaHook } from "./quota-hook-factory";

runService("aggregator", async () => {
  const config = parseConfig(aggregatorConfigSchema);
  const logger = createLogger("aggregator", config.LOG_LEVEL);
  const stores = await connectAggregatorStores(config, logger);
  const { clickhouse, redis, topics } = stores;

  const quota = config.QUOTA_CHECKS ? createQuotaHook(config, redis, logger) : undefined;
  const aggregator = new Aggregator({
    ...aggregatorOptions(config, stores, logger),
    // A consumer kafkajs gave up on must not look healthy: exit, the supervisor restarts us.
    onFatal: () => process.exit(1),
    ...(quota ? { afterInsert: quota.hook.afterInsert } : {}),
  });

  const metricsServer = createMetricsServer(aggregator.metrics.registry, async () => ({
    redis: redis.status === "ready",
    kafka: aggregator.kafkaHealthy(),
    clickhouse: await answersWithin(1_000, async () => (await clickhouse.ping()).success),
  }));
  const port = await listen(metricsServer, config.METRICS_HOST, config.METRICS_PORT, "METRICS_PORT");
  await aggregator.start();
  logger.info({ topic: topics.events, group: config.AGGREGATOR_GROUP_ID, metricsPort: port }, "aggregator started");

  return async () => {
    logger.info("stopping: finishing the batches in hand");
    await aggregator.stop();
    metricsServer.close();
    await quota?.close();
    await clickhouse.close();
    redis.disconnect();
  };
});
