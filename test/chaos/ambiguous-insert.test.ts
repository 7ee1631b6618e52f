import { createClickHouse, createIdempotentProducer } from "@keymeter/shared/stores";
import { afterEach, describe, expect, it } from "vitest";
import { ClickHouseProxy } from "../support/clickhouse-proxy";
import { expectExactly, storedPartitions } from "../support/exactly";
import { createTestPipeline, startTestAggregator, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("an INSERT that ClickHouse applied while the client saw a timeout", () => {
  it("is re-checked against the stored offsets and not sent again: no double count", async () => {
    const pipeline = await createTestPipeline("ambiguous", { partitions: 3 });
    cleanups.push(() => pipeline.close());
    const events = Array.from({ length: 300 }, () => usageEvent());
    const producer = createIdempotentProducer(pipeline.kafka);
    await producer.connect();
    await producer.send({
      topic: pipeline.topics.events,
      acks: -1,
      messages: events.map((e) => ({ key: e.subject, value: JSON.stringify(e) })),
    });
    await producer.disconnect();

    // The aggregator talks to ClickHouse through the proxy, with a request timeout short enough
    // for a quick test and long enough for a first INSERT on a busy machine.
    const proxy = await ClickHouseProxy.start(pipeline.connection.url);
    cleanups.push(() => proxy.close());
    const clickhouse = createClickHouse({ ...pipeline.connection, url: proxy.url }, { requestTimeoutMs: 4_000 });
    cleanups.push(() => clickhouse.close());
    proxy.withholdNextInserts(1);
    const aggregator = await startTestAggregator(pipeline, { clickhouse, maxRetryDelayMs: 200 });
    cleanups.push(() => aggregator.stop());

    await waitFor("every event stored", async () => (await pipeline.rawRows()) >= events.length, 20_000);
    const value = async (metric: { get(): Promise<{ values: Array<{ value: number }> }> }) =>
      (await metric.get()).values[0]?.value ?? 0;
    await waitFor("the client to time out", async () => (await value(aggregator.metrics.insertFailures)) >= 1);
    await waitFor("the insert retried", async () => (await value(aggregator.metrics.paused)) === 0);
    // The moment happened: ClickHouse applied an INSERT whose answer the client never got...
    expect(proxy.withheldQueryIds).toHaveLength(1);
    expect(await value(aggregator.metrics.insertFailures)).toBeGreaterThanOrEqual(1);
    // ...and the retry found those rows stored and sent no second INSERT: one per batch.
    expect(proxy.inserts.every((insert) => insert.status === 200)).toBe(true);
    const sameBatch = proxy.inserts.filter((insert) => insert.queryId === proxy.withheldQueryIds[0]);
    expect(sameBatch).toHaveLength(1);
    await expectExactly(pipeline, events);
    expect(await storedPartitions(pipeline)).toEqual([0, 1, 2]);
  });
});
