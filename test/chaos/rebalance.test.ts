import type { Aggregator } from "@keymeter/aggregator";
import { afterAll, describe, expect, it } from "vitest";
import { expectExactly, storedPartitions } from "../support/exactly";
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

    // The stream flows until both rebalances are over, however long they take on a busy machine.
    let rebalancesDone = false;
    const streaming = produceStream(pipeline, {
      total: 200_000,
      chunk: 500,
      pauseMs: 250,
      until: () => rebalancesDone,
    });
    const first = await start();
    const second = await start();
    await waitFor("both instances storing", async () => (await pipeline.rawRows()) > 2_000);

    const third = await start(); // joins mid-stream: a rebalance while batches are in flight
    await waitFor("the newcomer storing rows", async () => (await inserted(third)) > 0, 90_000);
    await first.stop(); // leaves mid-stream: its partitions move to the others
    const afterLeaving = (await inserted(second)) + (await inserted(third));
    await waitFor(
      "the others taking over",
      async () => (await inserted(second)) + (await inserted(third)) > afterLeaving + 2_000,
      90_000,
    );
    rebalancesDone = true;

    const sent = await streaming;
    expect(sent.length).toBeLessThan(200_000);
    await waitFor(`${sent.length} rows`, async () => (await pipeline.rawRows()) >= sent.length, 90_000);
    await Promise.all([second.stop(), third.stop()]);

    await expectExactly(pipeline, sent);
    expect(await storedPartitions(pipeline)).toEqual([0, 1, 2, 3, 4, 5]);
    // Every instance did part of the work.
    for (const instance of [first, second, third]) expect(await inserted(instance)).toBeGreaterThan(0);
  }, 300_000);
});
