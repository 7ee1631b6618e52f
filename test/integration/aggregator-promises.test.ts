import { AggregatorMetrics, ClickHouseUsageStore, type UsageStore } from "@keymeter/aggregator";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import type { UsageEventInput } from "@keymeter/shared/usage";
import { afterEach, describe, expect, it } from "vitest";
import { expectExactly, storedPartitions } from "../support/exactly";
import { createTestPipeline, startTestAggregator, type TestPipeline, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Sends `events` in small requests, so each partition holds many small record batches. */
async function produceInSmallBatches(pipeline: TestPipeline, events: UsageEventInput[], perSend: number) {
  const producer = createIdempotentProducer(pipeline.kafka);
  await producer.connect();
  for (let i = 0; i < events.length; i += perSend) {
    await producer.send({
      topic: pipeline.topics.events,
      acks: -1,
      messages: events.slice(i, i + perSend).map((e) => ({ key: e.subject, value: JSON.stringify(e) })),
    });
  }
  await producer.disconnect();
}

const value = async (metric: { get(): Promise<{ values: Array<{ value: number }> }> }) =>
  (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);

describe("aggregator while ClickHouse refuses inserts", () => {
  it("retries with doubling back-off up to maxRetryDelayMs, the partition paused meanwhile", async () => {
    const pipeline = await createTestPipeline("agg_backoff", { partitions: 1 });
    cleanups.push(() => pipeline.close());
    const events = Array.from({ length: 50 }, () => usageEvent());
    await produceInSmallBatches(pipeline, events, 50);

    const metrics = new AggregatorMetrics();
    const real = new ClickHouseUsageStore(pipeline.clickhouse);
    const attempts: Array<{ at: number; paused: number }> = [];
    const store: UsageStore = {
      async insert(rows, queryId) {
        if (rows.count === 0) return;
        attempts.push({ at: Date.now(), paused: await value(metrics.paused) });
        if (attempts.length <= 5) throw new Error("ClickHouse refused the insert (test)");
        await real.insert(rows, queryId);
      },
    };
    const aggregator = await startTestAggregator(pipeline, { store, metrics, maxRetryDelayMs: 400 });
    cleanups.push(() => aggregator.stop());
    await waitFor("the events stored after 5 failures", async () => (await pipeline.rawRows()) === 50, 20_000);
    await waitFor("the partition resumed", async () => (await value(metrics.paused)) === 0);

    const gaps = attempts.slice(1).map((a, i) => a.at - (attempts[i]?.at ?? 0));
    // 100, 200, 400 ms, then capped at 400 ms; each gap also holds the re-check of stored offsets.
    const expected = [100, 200, 400, 400, 400];
    expect(gaps).toHaveLength(expected.length);
    gaps.forEach((gap, i) => {
      const want = expected[i] ?? 0;
      expect(gap, `gap ${i + 1}`).toBeGreaterThanOrEqual(want - 5);
      expect(gap, `gap ${i + 1}`).toBeLessThan(want + 300);
    });
    // Paused from the first failure until the insert went through, then resumed.
    expect(attempts.map((a) => a.paused)).toEqual([0, 1, 1, 1, 1, 1]);
    expect(await value(metrics.insertFailures)).toBe(5);
    await expectExactly(pipeline, events);
  });

  it("holds at most one fetch of fetchBytesPerPartition per partition: a paused partition fetches nothing more", async () => {
    const partitions = 3;
    const pipeline = await createTestPipeline("agg_bounded", { partitions });
    cleanups.push(() => pipeline.close());
    const events = Array.from({ length: 1_500 }, () => usageEvent());
    await produceInSmallBatches(pipeline, events, 15);

    const fetchBytes = 16 * 1024;
    const metrics = new AggregatorMetrics();
    const real = new ClickHouseUsageStore(pipeline.clickhouse);
    let down = true;
    const store: UsageStore = {
      async insert(rows, queryId) {
        if (down) throw new Error("ClickHouse is down (test)");
        await real.insert(rows, queryId);
      },
    };
    const aggregator = await startTestAggregator(pipeline, {
      store,
      metrics,
      fetchBytesPerPartition: fetchBytes,
      concurrency: partitions,
      maxRetryDelayMs: 200,
    });
    cleanups.push(() => aggregator.stop());
    await waitFor("every partition paused", async () => (await value(metrics.paused)) === partitions, 20_000);
    const inHand = await value(metrics.consumed);
    await new Promise((r) => setTimeout(r, 1_000));
    // Nothing fetched while paused: the batches in hand are all the memory used.
    expect(await value(metrics.consumed)).toBe(inHand);
    // One fetch per partition: its bytes plus one record batch (a broker returns at least one).
    const smallest = Math.min(...events.map((e) => JSON.stringify(e).length));
    const recordBatch = 15 * (smallest + 200);
    const bound = partitions * Math.ceil((fetchBytes + recordBatch) / smallest);
    expect(inHand).toBeGreaterThan(0);
    expect(inHand).toBeLessThanOrEqual(bound);
    expect(bound).toBeLessThan(events.length / 4);

    down = false;
    await waitFor("the backlog stored", async () => (await pipeline.rawRows()) === events.length, 30_000);
    await expectExactly(pipeline, events);
    expect(await storedPartitions(pipeline)).toEqual([0, 1, 2]);
  });
});
