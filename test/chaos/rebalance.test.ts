import type { Aggregator } from "@keymeter/aggregator";
import { afterAll, describe, expect, it } from "vitest";
import { createTestPipeline, startTestAggregator, type TestPipeline } from "../support/pipeline";
import { waitFor } from "../support/poll";
import { produceStream } from "../support/stream";

describe("scaling out: instances join and leave one consumer group during a stream", () => {
  let pipeline: TestPipeline;
  afterAll(() => pipeline?.close());

  it("keeps totals exact through rebalances with batches in flight", async () => {
    pipeline = await createTestPipeline("rebalance", { partitions: 6 });
    const start = () => startTestAggregator(pipeline, { sessionTimeoutMs: 6_000 });
    const inserted = async (a: Aggregator) => (await a.metrics.inserted.get()).values[0]?.value ?? 0;

    const total = 40_000;
    const streaming = produceStream(pipeline, { total, chunk: 500, pauseMs: 250 });
    const first = await start();
    const second = await start();
    await waitFor("both instances storing", async () => (await pipeline.rawRows()) > 2_000);

    const third = await start(); // joins mid-stream: a rebalance while batches are in flight
    await waitFor("the newcomer storing rows", async () => (await inserted(third)) > 0, 60_000);
    const rowsWhenLeaving = await pipeline.rawRows();
    await first.stop(); // leaves mid-stream: its partitions move to the others

    expect(await streaming).toBe(total);
    expect(rowsWhenLeaving).toBeLessThan(total);
    await waitFor(`${total} rows`, async () => (await pipeline.rawRows()) >= total, 90_000);
    await Promise.all([second.stop(), third.stop()]);

    expect(await pipeline.rawRows()).toBe(total);
    expect(await pipeline.countedRequests()).toBe(total);
    // Every instance did part of the work.
    for (const instance of [first, second, third]) expect(await inserted(instance)).toBeGreaterThan(0);
  }, 180_000);
});
