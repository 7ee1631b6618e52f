import { createLogger } from "@keymeter/shared/runtime";
import { createIdempotentProducer, createKafka, ensureTopics, topicNames } from "@keymeter/shared/stores";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { services, uniqueName } from "../support/services";

const logger = createLogger("test", "silent");

describe("Kafka topics (real broker)", () => {
  const kafka = createKafka(services().kafkaBrokers, "test-topics", logger);
  const admin = kafka.admin();
  const topics = topicNames(`${uniqueName("topics")}.`);

  beforeAll(() => admin.connect());
  afterAll(async () => {
    await admin.deleteTopics({ topics: [topics.events, topics.deadLetter] }).catch(() => undefined);
    await admin.disconnect();
  });

  it("creates the events and DLQ topics once, and grows partitions on request", async () => {
    await ensureTopics(admin, topics, { partitions: 3 });
    await ensureTopics(admin, topics, { partitions: 3 });
    let meta = await admin.fetchTopicMetadata({ topics: [topics.events, topics.deadLetter] });
    const partitions = Object.fromEntries(meta.topics.map((t) => [t.name, t.partitions.length]));
    expect(partitions).toEqual({ [topics.events]: 3, [topics.deadLetter]: 1 });

    await ensureTopics(admin, topics, { partitions: 4 });
    meta = await admin.fetchTopicMetadata({ topics: [topics.events] });
    expect(meta.topics[0]?.partitions.length).toBe(4);
  });

  it("round-trips a keyed message from producer to consumer", async () => {
    await ensureTopics(admin, topics, { partitions: 3 });
    const producer = createIdempotentProducer(kafka);
    const consumer = kafka.consumer({ groupId: uniqueName("group") });
    await producer.connect();
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: topics.events, fromBeginning: true });
      const received = new Promise<{ key: string; value: string }>((resolve) => {
        void consumer.run({
          eachMessage: async ({ message }) => resolve({ key: String(message.key), value: String(message.value) }),
        });
      });
      await producer.send({ topic: topics.events, messages: [{ key: "key_abc12345", value: "hello" }] });
      expect(await received).toEqual({ key: "key_abc12345", value: "hello" });
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
    }
  });
});
