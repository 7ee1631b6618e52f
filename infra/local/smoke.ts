/**
 * The pipeline's smoke run against the local services: provisions topics and tables, sends
 * a few usage events through Kafka and reads them back. `npm run pipeline` runs it after
 * `services.sh up`.
 */
import { randomUUID } from "node:crypto";
import {
  AppError,
  clickHouseConnection,
  createIdempotentProducer,
  createKafka,
  createLogger,
  ensureTopics,
  parseConfig,
  parseUsageEventBytes,
  runMigrations,
  runService,
  storesConfigSchema,
  topicNames,
  type UsageEventInput,
} from "@keymeter/shared";

const EVENTS = 5;

runService("pipeline", async () => {
  const config = parseConfig(storesConfigSchema);
  const logger = createLogger("pipeline", config.LOG_LEVEL);
  const migrations = await runMigrations(clickHouseConnection(config), { logger });
  console.log(
    `clickhouse: ${migrations.applied.length} migrations applied, ${migrations.alreadyApplied.length} already there`,
  );

  const kafka = createKafka(config.KAFKA_BROKERS, "keymeter-smoke", logger);
  const topics = topicNames();
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topics, { partitions: 6 });
  await admin.disconnect();
  console.log(`kafka: topics ${topics.events}, ${topics.deadLetter} ready`);

  const runId = randomUUID();
  const events: UsageEventInput[] = Array.from({ length: EVENTS }, (_, i) => ({
    specversion: "1.0",
    id: `${runId}-${i}`,
    source: "smoke",
    type: "api.request",
    subject: "key_smoketest01",
    time: new Date().toISOString(),
    data: { method: "GET", route: "/v1/smoke", status: 200, latency_ms: 1 },
  }));

  const producer = createIdempotentProducer(kafka);
  await producer.connect();
  const sent = await producer.send({
    topic: topics.events,
    acks: -1,
    messages: events.map((e) => ({ key: e.subject, value: JSON.stringify(e) })),
  });
  await producer.disconnect();

  // Read back from the partition the key went to, starting at the offset the broker gave it.
  const [first] = sent;
  if (!first) throw new AppError("internal", "Kafka acknowledged no partition");
  const consumer = kafka.consumer({ groupId: `keymeter-smoke-${runId}` });
  await consumer.connect();
  await consumer.subscribe({ topic: topics.events, fromBeginning: true });
  const seen = new Set<string>();
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new AppError("service_unavailable", "smoke events did not come back from Kafka in 20s")),
      20_000,
    );
    void consumer.run({
      eachMessage: async ({ message }) => {
        const parsed = parseUsageEventBytes(message.value);
        if (parsed.ok && parsed.event.id.startsWith(runId)) seen.add(parsed.event.id);
        if (seen.size === EVENTS) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
    consumer.seek({ topic: topics.events, partition: first.partition, offset: String(first.baseOffset ?? "0") });
  });
  await consumer.disconnect();
  console.log(`smoke: ${EVENTS} events produced to ${topics.events} and read back valid`);
  return undefined;
});
