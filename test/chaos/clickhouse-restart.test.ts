import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectExactly, storedPartitions } from "../support/exactly";
import { IsolatedServices } from "../support/isolated-services";
import { createTestPipeline, startTestAggregator, type TestPipeline } from "../support/pipeline";
import { waitFor } from "../support/poll";
import { produceStream } from "../support/stream";

async function gauge(metric: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> {
  return (await metric.get()).values.reduce((sum, v) => sum + v.value, 0);
}

describe("ClickHouse stopped and restarted during a stream (private ClickHouse)", () => {
  let services: IsolatedServices;
  let pipeline: TestPipeline;
  beforeAll(async () => {
    services = await IsolatedServices.create();
    services.up("clickhouse");
  }, 120_000);
  afterAll(async () => {
    await pipeline?.close();
    services.destroy();
  }, 60_000);

  it("pauses, retries with back-off, catches up, and the totals are exact", async () => {
    pipeline = await createTestPipeline("ch_restart", { clickhouseUrl: services.clickhouseUrl, partitions: 3 });
    const aggregator = await startTestAggregator(pipeline, { maxRetryDelayMs: 1_000 });
    try {
      const total = 30_000;
      const streaming = produceStream(pipeline, { total, chunk: 500, pauseMs: 200 });
      await waitFor("rows stored before the outage", async () => (await pipeline.rawRows()) > 0);

      services.down("clickhouse");
      await waitFor("partitions paused", async () => (await gauge(aggregator.metrics.paused)) > 0, 20_000);
      // Memory stays bounded: the paused partitions fetch nothing more while ClickHouse is away.
      const failuresDuringOutage = await gauge(aggregator.metrics.insertFailures);
      expect(failuresDuringOutage).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 3_000));

      services.up("clickhouse");
      const sent = await streaming;
      expect(sent).toHaveLength(total);
      await waitFor(`${total} rows after the restart`, async () => (await pipeline.rawRows()) >= total, 90_000);
      await waitFor("partitions resumed", async () => (await gauge(aggregator.metrics.paused)) === 0);
      await expectExactly(pipeline, sent);
      expect(await storedPartitions(pipeline)).toEqual([0, 1, 2]);
    } finally {
      await aggregator.stop();
    }
  }, 180_000);
});
