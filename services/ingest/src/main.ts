import { KeyAttributor } from "@keymeter/shared/api-keys";
import { bindPort, createLogger, parseConfig, runService } from "@keymeter/shared/runtime";
import {
  createIdempotentProducer,
  createKafka,
  createRedis,
  ensureTopics,
  redisKeys,
  topicNames,
} from "@keymeter/shared/stores";
import { KafkaPublisher, PartitionCount } from "@keymeter/shared/usage";
import { buildIngestApp } from "./app";
import { ingestConfigSchema } from "./config";

runService("ingest", async () => {
  const config = parseConfig(ingestConfigSchema);
  const logger = createLogger("ingest", config.LOG_LEVEL);
  const kafka = createKafka(config.KAFKA_BROKERS, "keymeter-ingest", logger);
  const topics = topicNames(config.KAFKA_TOPIC_PREFIX);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topics, { partitions: config.KAFKA_EVENT_PARTITIONS });
  // Bounded retries: a send the client already got a 503 for must not linger in memory.
  const producer = createIdempotentProducer(kafka, { retry: { retries: 3, maxRetryTime: 2_000 } });
  await producer.connect();
  // The key registry's Redis: aliases resolve to key ids, customer and tier are filled in.
  const redis = createRedis(config.REDIS_URL, { logger });

  const app = buildIngestApp({
    publisher: new KafkaPublisher(producer, topics.events, new PartitionCount(admin, topics.events), 10_000),
    tokens: config.INGEST_TOKENS,
    logger,
    maxBodyBytes: config.INGEST_MAX_BODY_BYTES,
    maxBatchEvents: config.INGEST_MAX_BATCH_EVENTS,
    kongSource: config.KONG_SOURCE,
    attribution: new KeyAttributor({ redis, keys: redisKeys(config.REDIS_KEY_PREFIX) }),
    health: () => ({ redis: redis.status === "ready" }),
  });
  await bindPort(config.INGEST_HOST, config.INGEST_PORT, "INGEST_PORT", () =>
    app.listen({ host: config.INGEST_HOST, port: config.INGEST_PORT }),
  );
  logger.info({ port: config.INGEST_PORT, topic: topics.events }, "ingest listening");
  return async () => {
    await app.close();
    await producer.disconnect();
    await admin.disconnect();
    redis.disconnect();
  };
});
