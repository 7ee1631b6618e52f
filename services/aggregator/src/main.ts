import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { KeyAttributor } from "@keymeter/shared/api-keys";
import {
  answersWithin,
  createLogger,
  createMetricsServer,
  listen,
  parseConfig,
  runService,
} from "@keymeter/shared/runtime";
import {
  clickHouseConnection,
  createClickHouse,
  createKafka,
  createRedis,
  ensureTopics,
  redisKeys,
  runMigrations,
  topicNames,
} from "@keymeter/shared/stores";
import { Aggregator } from "./aggregator";
import { aggregatorConfigSchema } from "./config";

runService("aggregator", async () => {
  const config = parseConfig(aggregatorConfigSchema);
  const logger = createLogger("aggregator", config.LOG_LEVEL);
  const connection = clickHouseConnection(config);
  await runMigrations(connection, { dir: MIGRATIONS_DIR, logger });
  // Each ClickHouse call ends well inside the group's session timeout: between retries the
  // aggregator heart-beats, so a slow ClickHouse cannot cost it its partitions unnoticed.
  const clickhouse = createClickHouse(connection, {
    requestTimeoutMs: Math.floor(config.AGGREGATOR_SESSION_TIMEOUT_MS / 2),
  });
  const redis = createRedis(config.REDIS_URL, { logger });
  const kafka = createKafka(config.KAFKA_BROKERS, "keymeter-aggregator", logger);
  const topics = topicNames(config.KAFKA_TOPIC_PREFIX);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topics, { partitions: config.KAFKA_EVENT_PARTITIONS });
  await admin.disconnect();

  const aggregator = new Aggregator({
    kafka,
    clickhouse,
    redis,
    topics,
    groupId: config.AGGREGATOR_GROUP_ID,
    logger,
    dedupWindowSeconds: config.DEDUP_WINDOW_SECONDS,
    dedupKeyPrefix: config.DEDUP_KEY_PREFIX,
    concurrency: config.AGGREGATOR_CONCURRENCY,
    fetchBytesPerPartition: config.AGGREGATOR_FETCH_BYTES_PER_PARTITION,
    sessionTimeoutMs: config.AGGREGATOR_SESSION_TIMEOUT_MS,
    attribution: new KeyAttributor({ redis, keys: redisKeys(config.REDIS_KEY_PREFIX) }),
    // A consumer kafkajs gave up on must not look healthy: exit, the supervisor restarts us.
    onFatal: () => process.exit(1),
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
    await clickhouse.close();
    redis.disconnect();
  };
});
