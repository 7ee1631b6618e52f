import { type Aggregator, DedupWindow, dedupWindowKeyPrefix } from "@keymeter/aggregator";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import type { UsageEventInput } from "@keymeter/shared/usage";
import { afterEach, describe, expect, it } from "vitest";
import { type CrashMoment, killAllAggregators, spawnCrashingAggregator } from "../support/aggregator-process";
import { expectExactly, storedPartitions } from "../support/exactly";
import { TEST_KEYS } from "../support/partition-keys";
import { createTestPipeline, startTestAggregator, type TestPipeline, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

const PARTITIONS = 6;
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  await killAllAggregators();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function produce(pipeline: TestPipeline, messages: Array<{ key: string; value: string }>): Promise<void> {
  const producer = createIdempotentProducer(pipeline.kafka);
  await producer.connect();
  // Several sends: each partition's backlog is more than one record batch.
  for (let i = 0; i < messages.length; i += 200) {
    await producer.send({ topic: pipeline.topics.events, acks: -1, messages: messages.slice(i, i + 200) });
  }
  await producer.disconnect();
}

const encode = (event: UsageEventInput) => ({ key: event.subject, value: JSON.stringify(event) });

/** How many of `members` (source\nid) of `partition` the dedup window hands over to a new owner (Redis). */
async function markedOf(pipeline: TestPipeline, partition: number, members: string[]): Promise<number> {
  const window = new DedupWindow(pipeline.redis, {
    windowSeconds: 600,
    keyPrefix: dedupWindowKeyPrefix(pipeline.dedupKeyPrefix, pipeline.topics.events),
  });
  let marked = 0;
  for (const member of members) {
    const [source = "", id = ""] = member.split("\n");
    if (await window.has(partition, source, id)) marked++;
  }
  return marked;
}

/** How many of `members` (source\nid) are in usage_events. */
async function storedOf(pipeline: TestPipeline, members: string[]): Promise<number> {
  const result = await pipeline.clickhouse.query({
    query: "SELECT source, event_id FROM usage_events",
    format: "JSONEachRow",
  });
  const stored = new Set(
    (await result.json<{ source: string; event_id: string }>()).map((r) => `${r.source}\n${r.event_id}`),
  );
  return members.filter((member) => stored.has(member)).length;
}

/** The offset the group committed to Kafka for `partition` (-1: none). */
async function committedOffset(pipeline: TestPipeline, partition: number): Promise<number> {
  const [topic] = await pipeline.admin.fetchOffsets({
    groupId: `${pipeline.name}-group`,
    topics: [pipeline.topics.events],
  });
  return Number(topic?.partitions.find((p) => p.partition === partition)?.offset ?? -1);
}

/** Every DLQ entry as `partition/offset/line` (its headers), in arrival order. */
async function deadLetterSources(pipeline: TestPipeline, atLeast: number): Promise<string[]> {
  const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-dlq-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: pipeline.topics.deadLetter, fromBeginning: true });
  const seen: string[] = [];
  await consumer.run({
    eachMessage: async ({ message }) => {
      const h = message.headers ?? {};
      seen.push(`${h["x-source-partition"]}/${h["x-source-offset"]}/${h["x-source-line"]}`);
    },
  });
  await waitFor(`${atLeast} DLQ entries`, () => seen.length >= atLeast, 20_000);
  await consumer.disconnect();
  return seen;
}

/**
 * One crash at a moment that matters, then a successor in the same group. The events sit
 * in Kafka as a backlog, one key per partition, so the victim is busy when it dies (it dies
 * on its first batch with rows, by its own hand, at exactly that moment) and every
 * partition is involved. Then every event is sent again, as producer retries: the
 * successor must drop them all.
 */
async function crashAndRecover(at: CrashMoment) {
  const pipeline = await createTestPipeline(`crash_${at}`, { partitions: PARTITIONS });
  cleanups.push(() => pipeline.close());
  const events = Array.from({ length: 600 }, () => usageEvent());
  // One malformed message per partition: every batch has a DLQ entry to send before its INSERT.
  const malformed = TEST_KEYS.slice(0, PARTITIONS).map((key) => ({ key, value: `{"broken": "${key}"` }));
  await produce(pipeline, [...events.map(encode), ...malformed]);

  const victim = spawnCrashingAggregator(pipeline, at);
  const report = await victim.crashed;
  expect(report).toMatchObject({ at, signal: "SIGKILL" });
  const batch = report.members.length;
  expect(batch).toBeGreaterThan(0);
  // Where the crashed batch stands: in ClickHouse? marked in the dedup window? committed?
  const atCrash = {
    stored: await storedOf(pipeline, report.members),
    marked: await markedOf(pipeline, report.partition, report.members),
    committed: await committedOffset(pipeline, report.partition),
  };

  let successor: Aggregator | undefined;
  const startSuccessor = async () => {
    successor = await startTestAggregator(pipeline, { sessionTimeoutMs: 6_000 });
    cleanups.push(() => successor?.stop() ?? Promise.resolve());
    await waitFor("every event stored", async () => (await pipeline.rawRows()) >= events.length, 40_000);
    await produce(pipeline, events.map(encode));
    await waitFor(
      "every retry dropped",
      async () => (await successor?.metrics.duplicates.get())?.values[0]?.value === events.length,
      20_000,
    );
    return successor;
  };
  return { pipeline, events, batch, atCrash, startSuccessor, malformed };
}

describe("aggregator SIGKILLed at the moments that matter (successor in the same group)", () => {
  it("after the INSERT, before the dedup marking and the Kafka commit: the successor skips the stored batch and marks its ids", async () => {
    const { pipeline, events, batch, atCrash, startSuccessor } = await crashAndRecover("after-insert");
    // The moment was hit: the batch is stored, none of its ids marked, its offset not committed.
    expect(atCrash).toEqual({ stored: batch, marked: 0, committed: -1 });

    const successor = await startSuccessor();
    // aggregator_already_stored_total: the successor found the victim's batch in ClickHouse.
    expect((await successor.metrics.skipped.get()).values[0]?.value).toBeGreaterThan(0);
    // Retries of the victim's rows were dropped too: the successor re-marked them.
    await expectExactly(pipeline, events);
    expect(await storedPartitions(pipeline)).toEqual([0, 1, 2, 3, 4, 5]);
  }, 90_000);

  it("after the dedup marking, before the Kafka commit: the successor skips the stored batch", async () => {
    const { pipeline, events, batch, atCrash, startSuccessor } = await crashAndRecover("after-mark");
    expect(atCrash).toEqual({ stored: batch, marked: batch, committed: -1 });

    const successor = await startSuccessor();
    expect((await successor.metrics.skipped.get()).values[0]?.value).toBeGreaterThan(0);
    await expectExactly(pipeline, events);
    expect(await storedPartitions(pipeline)).toEqual([0, 1, 2, 3, 4, 5]);
  }, 90_000);

  it("before the INSERT, after the DLQ send: nothing stored twice, the repeated DLQ entry carries the same source headers", async () => {
    const { pipeline, events, atCrash, startSuccessor, malformed } = await crashAndRecover("before-insert");
    expect(atCrash).toEqual({ stored: 0, marked: 0, committed: -1 });
    // The victim had dead-lettered its batch's malformed event before it died.
    const dlqOffsets = await pipeline.admin.fetchTopicOffsets(pipeline.topics.deadLetter);
    expect(dlqOffsets.reduce((sum, p) => sum + Number(p.high), 0)).toBeGreaterThan(0);

    await startSuccessor();
    await expectExactly(pipeline, events);
    // At least once: the successor dead-letters again what the victim had sent. Every entry
    // names its source message; the distinct sources are exactly the malformed messages.
    const sources = await deadLetterSources(pipeline, malformed.length + 1);
    expect(sources.length).toBeGreaterThan(malformed.length);
    expect(new Set(sources).size).toBe(malformed.length);
    expect([...new Set(sources.map((s) => s.split("/")[0]))].sort()).toEqual(["0", "1", "2", "3", "4", "5"]);
  }, 90_000);
});
