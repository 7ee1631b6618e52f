import { AppError, createLogger, parseConfig, runService } from "@keymeter/shared/runtime";
import { createIdempotentProducer, createKafka, ensureTopics, topicNames } from "@keymeter/shared/stores";
import { PartitionCount } from "@keymeter/shared/usage";
import { buildIngestApp } from "./app";
import { ingestConfigSchema } from "./config";
import { KafkaEventPublisher } from "./event-publisher";

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

  const app = buildIngestApp({
    publisher: new KafkaEventPublisher(producer, topics.events, new PartitionCount(admin, topics.events)),
    tokens: config.INGEST_TOKENS,
    logger,
    maxBodyBytes: config.INGEST_MAX_BODY_BYTES,
    maxBatchEvents: config.INGEST_MAX_BATCH_EVENTS,
    kongSource: config.KONG_SOURCE,
  });
  try {
    await app.listen({ host: config.INGEST_HOST, port: config.INGEST_PORT });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw new AppError(
        "port_in_use",
        `port ${config.INGEST_PORT} is already in use (set INGEST_PORT to another port)`,
      );
    }
    throw error;
  }
  logger.info({ port: config.INGEST_PORT, topic: topics.events }, "ingest listening");
  return async () => {
    await app.close();
    await producer.disconnect();
    await admin.disconnect();
  };
});
