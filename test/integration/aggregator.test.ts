import type { Aggregator, StoredBatch } from "@keymeter/aggregator";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import { afterEach, describe, expect, it } from "vitest";
import { expectExactly } from "../support/exactly";
import { createTestPipeline, startTestAggregator, type TestPipeline, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startAggregator(pipeline: TestPipeline, groupId = `${pipeline.name}-group`): Promise<Aggregator> {
  const aggregator = await startTestAggregator(pipeline, { groupId });
  cleanups.push(() => aggregator.stop());
  return aggregator;
}

/** The event at (partition, offset, line) of the events topic, as its JSON text: where a DLQ entry says it came from. */
async function sourceLine(pipeline: TestPipeline, partition: string, offset: string, line: string): Promise<string> {
  const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-source-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: pipeline.topics.events, fromBeginning: true });
  const found = new Promise<string>((resolve) => {
    void consumer.run({
      eachMessage: async (payload) => {
        if (String(payload.partition) === partition && payload.message.offset === offset) {
          resolve(String(payload.message.value).split("\n")[Number(line)] ?? "");
        }
      },
    });
  });
  const text = await Promise.race([
    found,
    new Promise<string>((_, reject) =>
      setTimeout(() => reject(new Error(`no message at ${partition}/${offset}`)), 15_000),
    ),
  ]);
  await consumer.disconnect();
  return text;
}

async function produce(pipeline: TestPipeline, values: Array<{ key: string; value: string }>): Promise<void> {
  const producer = createIdempotentProducer(pipeline.kafka);
  await producer.connect();
  await producer.send({ topic: pipeline.topics.events, acks: -1, messages: values });
  await producer.disconnect();
}

describe("aggregator: Kafka -> ClickHouse", () => {
  it("counts exactly the distinct valid events; duplicates dropped, malformed ones in the DLQ with a reason", async () => {
    const pipeline = await createTestPipeline("agg");
    cleanups.push(() => pipeline.close());
    const valid = Array.from({ length: 500 }, () => usageEvent());
    const retries = valid.slice(0, 120); // the same events again, as a producer retry would send them
    const malformed = [
      { key: "key_bad00001", value: "{not json" },
      { key: "key_bad00002", value: JSON.stringify({ ...usageEvent(), subject: "sk_live_secret" }) },
      { key: "key_bad00003", value: JSON.stringify(usageEvent({}, { status: 42 })) },
    ];
    const encode = (e: (typeof valid)[number]) => ({ key: e.subject, value: JSON.stringify(e) });
    await produce(pipeline, [...valid.map(encode), ...malformed.slice(0, 2)]);
    const aggregator = await startAggregator(pipeline);
    await waitFor("first events stored", async () => (await pipeline.rawRows()) === 500);
    // Retries arrive in later batches, after their originals were stored and marked.
    await produce(pipeline, [...retries.map(encode), malformed[2] ?? { key: "", value: "" }]);

    const dlq: Array<{ value: string; error: string; partition: string; offset: string; line: string }> = [];
    const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-dlq-reader` });
    await consumer.connect();
    cleanups.push(() => consumer.disconnect());
    await consumer.subscribe({ topic: pipeline.topics.deadLetter, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        dlq.push({
          value: String(message.value),
          error: String(message.headers?.["x-error"]),
          partition: String(message.headers?.["x-source-partition"]),
          offset: String(message.headers?.["x-source-offset"]),
          line: String(message.headers?.["x-source-line"]),
        });
      },
    });
    await waitFor("3 DLQ messages", () => dlq.length === 3);
    await waitFor("retries consumed", async () => (await aggregator.metrics.duplicates.get()).values[0]?.value === 120);

    await expectExactly(pipeline, valid);
    const reasons = dlq.map((d) => d.error).sort();
    expect(reasons).toEqual([
      expect.stringContaining("data.status:"),
      expect.stringContaining("not valid JSON"),
      expect.stringContaining("subject:"),
    ]);
    expect(dlq.map((d) => d.value)).toContain("{not json");
    // Each entry's headers name the message it came from: the event at that place is the entry.
    for (const entry of dlq) {
      expect(await sourceLine(pipeline, entry.partition, entry.offset, entry.line)).toBe(entry.value);
    }
  });

  it("resumes from the offsets stored in ClickHouse, not Kafka's committed offset", async () => {
    const pipeline = await createTestPipeline("agg-resume", { partitions: 1 });
    cleanups.push(() => pipeline.close());
    const events = Array.from({ length: 200 }, () => usageEvent());
    await produce(
      pipeline,
      events.map((e) => ({ key: e.subject, value: JSON.stringify(e) })),
    );

    // A first consumer group stores everything; a second group (no committed offsets: as if
    // every commit had been lost in a crash) must store nothing more.
    const first = await startAggregator(pipeline, `${pipeline.name}-a`);
    await waitFor("200 rows", async () => (await pipeline.rawRows()) === 200);
    await first.stop();
    cleanups.pop();
    const second = await startAggregator(pipeline, `${pipeline.name}-b`);
    await waitFor("second group caught up", async () => (await second.metrics.skipped.get()).values[0]?.value === 200);
    await expectExactly(pipeline, events);
  });

  it("stores the good events of a packed message and dead-letters its bad line with the line number", async () => {
    const pipeline = await createTestPipeline("agg_packed", { partitions: 1 });
    cleanups.push(() => pipeline.close());
    const good = [usageEvent({ subject: "key_packed0001" }), usageEvent({ subject: "key_packed0002" })];
    const value = [JSON.stringify(good[0]), '{"specversion":"1.0","id":"broken"}', JSON.stringify(good[1])].join("\n");
    await produce(pipeline, [{ key: "key_packed0001", value }]);
    const aggregator = await startAggregator(pipeline);
    // The rollups are written by views after the raw rows (the same INSERT, one after another).
    await waitFor(
      "2 rows and their rollups",
      async () => (await pipeline.rawRows()) === 2 && (await pipeline.countedRequests()) === 2,
    );
    await waitFor(
      "1 event dead-lettered",
      async () => (await aggregator.metrics.deadLettered.get()).values[0]?.value === 1,
    );

    const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-dlq-reader` });
    await consumer.connect();
    cleanups.push(() => consumer.disconnect());
    await consumer.subscribe({ topic: pipeline.topics.deadLetter, fromBeginning: true });
    const dead = await new Promise<Record<string, string>>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) =>
          resolve({
            value: String(message.value),
            partition: String(message.headers?.["x-source-partition"]),
            offset: String(message.headers?.["x-source-offset"]),
            line: String(message.headers?.["x-source-line"]),
            error: String(message.headers?.["x-error"]),
          }),
      });
    });
    expect(dead).toEqual({
      value: '{"specversion":"1.0","id":"broken"}',
      partition: "0",
      offset: "0",
      line: "1",
      error: expect.stringContaining("source:"),
    });
    await expectExactly(pipeline, good);
  });

  it("calls the after-insert hook once per stored event, never for duplicates, malformed or already stored ones", async () => {
    const pipeline = await createTestPipeline("agg_hook", { partitions: 2 });
    cleanups.push(() => pipeline.close());
    const events = Array.from({ length: 300 }, () => usageEvent());
    const encode = (e: (typeof events)[number]) => ({ key: e.subject, value: JSON.stringify(e) });
    const seen: StoredBatch[] = [];
    await produce(pipeline, [...events.map(encode), { key: "key_bad00001", value: "{not json" }]);
    const aggregator = await startTestAggregator(pipeline, { afterInsert: (batch) => void seen.push(batch) });
    cleanups.push(() => aggregator.stop());
    await waitFor("300 rows", async () => (await pipeline.rawRows()) === 300);
    // Retries of stored events: dropped as duplicates, so the hook must not see them again.
    await produce(pipeline, events.slice(0, 50).map(encode));
    await waitFor("retries dropped", async () => (await aggregator.metrics.duplicates.get()).values[0]?.value === 50);

    const hooked = seen.flatMap((batch) => batch.events.map((e) => `${e.source}/${e.id}`)).sort();
    expect(hooked).toEqual(events.map((e) => `${e.source}/${e.id}`).sort());
    for (const batch of seen) expect(batch.topic).toBe(pipeline.topics.events);
    await expectExactly(pipeline, events);
  });
});
