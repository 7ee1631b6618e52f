import { afterAll, describe, expect, it } from "vitest";
import { killAllAggregators, killHard, spawnAggregator, stopGracefully } from "../support/aggregator-process";
import { createTestPipeline, type TestPipeline } from "../support/pipeline";
import { waitFor } from "../support/poll";
import { produceStream } from "../support/stream";

describe("aggregator killed with SIGKILL during a stream", () => {
  let pipeline: TestPipeline;
  afterAll(async () => {
    await killAllAggregators();
    await pipeline?.close();
  });

  it("loses nothing and counts nothing twice across repeated crashes", async () => {
    pipeline = await createTestPipeline("sigkill", { partitions: 4 });
    // About 40 s of stream: long enough for four crashes, each followed by a 6 s session timeout.
    const total = 60_000;
    const streaming = produceStream(pipeline, { total, chunk: 500, pauseMs: 300 });

    let aggregator = spawnAggregator(pipeline);
    const kills: number[] = [];
    for (let round = 0; round < 4; round++) {
      // Wait until this instance is storing rows, then kill it at a random moment of its work.
      const before = await pipeline.rawRows();
      await waitFor(`instance ${round} storing rows`, async () => (await pipeline.rawRows()) > before, 60_000);
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 400)));
      kills.push(await pipeline.rawRows());
      await killHard(aggregator);
      aggregator = spawnAggregator(pipeline);
    }
    expect(await streaming).toBe(total);
    await waitFor(`${total} rows after ${kills.length} kills`, async () => (await pipeline.rawRows()) >= total, 90_000);
    expect(await stopGracefully(aggregator)).toBe(0);

    // Killed mid-stream each time (rows were neither zero nor complete), yet the totals are exact.
    expect(kills.every((rows) => rows > 0 && rows < total)).toBe(true);
    expect(await pipeline.rawRows()).toBe(total);
    expect(await pipeline.countedRequests()).toBe(total);
  }, 180_000);
});
