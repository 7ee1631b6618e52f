import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { KeyAttributor } from "@keymeter/shared/api-keys";
import type { Logger } from "@keymeter/shared/runtime";
import {
  type ClickHouseClient,
  clickHouseConnection,
  createClickHouse,
  createKafka,
  createRedis,
  ensureTopics,
  type Redis,
  redisKeys,
  runMigrations,
  type Topics,
  topicNames,
} from "@keymeter/shared/stores";
import type { Kafka } from "kafkajs";
import type { AggregatorOptions } from "./aggregator";
import type { AggregatorConfig } from "./config";

export interface AggregatorStores {
  clickhouse: ClickHouseClient;
  redis: Redis;
  kafka: Kafka;
  topics: Topics;
}

/** Applies the schema, creates the topics and connects the clients the aggregator runs on. */
export async function connectAggregatorStores(config: AggregatorConfig, logger: Logger): Promise<AggregatorStores> {
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
  return { clickhouse, redis, kafka, topics };
}

/** The aggregator's options from its config; callers add their own hooks (onFatal, afterInsert, store). */
export function aggregatorOptions(
  config: AggregatorConfig,
  stores: AggregatorStores,
  logger: Logger,
): AggregatorOptions {
  return {
    ...stores,
    groupId: config.AGGREGATOR_GROUP_ID,
    logger,
    dedupWindowSeconds: config.DEDUP_WINDOW_SECONDS,
    dedupKeyPrefix: config.DEDUP_KEY_PREFIX,
    concurrency: config.AGGREGATOR_CONCURRENCY,
    fetchBytesPerPartition: config.AGGREGATOR_FETCH_BYTES_PER_PARTITION,
    sessionTimeoutMs: config.AGGREGATOR_SESSION_TIMEOUT_MS,
    maxInsertRows: config.AGGREGATOR_INSERT_MAX_ROWS,
    insertLingerMs: config.AGGREGATOR_INSERT_LINGER_MS,
    attribution: new KeyAttributor({ redis: stores.redis, keys: redisKeys(config.REDIS_KEY_PREFIX) }),
  };
}
