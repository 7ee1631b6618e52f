import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import { afterAll, describe, expect, it } from "vitest";
import { killAllAggregators, spawnAggregator, stopGracefully } from "../support/aggregator-process";
import { expectExactly } from "../support/exactly";
import { freePort } from "../support/isolated-services";
import { createTestPipeline, type TestPipeline, usageEvent } from "../support/pipeline";
import { pollUntil } from "../support/poll";

/** The README's "Ingest path" section, which lists the aggregator's metrics. */
const INGEST_PATH =
  /^## Ingest path$([\s\S]*?)^## /m.exec(readFileSync(join(import.meta.dirname, "../../README.md"), "utf8"))?.[1] ?? "";

function exitOf(child: ReturnType<typeof spawnAggregator>, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => reject(new Error(`the process did not exit within ${timeoutMs} ms`)), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

describe("aggregator service (npm run aggregator, as a process)", () => {
  const pipelines: TestPipeline[] = [];
  afterAll(async () => {
    await killAllAggregators();
    for (const pipeline of pipelines) await pipeline.close();
  });

  it("serves every metric the README names on /metrics, with the counts of what it did", async () => {
    const pipeline = await createTestPipeline("agg_metrics", { partitions: 3 });
    pipelines.push(pipeline);
    const events = Array.from({ length: 30 }, () => usageEvent());
    const producer = createIdempotentProducer(pipeline.kafka);
    await producer.connect();
    const encode = (e: (typeof events)[number]) => ({ key: e.subject, value: JSON.stringify(e) });
    await producer.send({
      topic: pipeline.topics.events,
      acks: -1,
      messages: [...events.map(encode), { key: "key_bad00001", value: "{not json" }],
    });
    const port = await freePort();
    const child = spawnAggregator(pipeline, { METRICS_PORT: String(port) });
    const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const sample = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    await pollUntil(async () => sample(await scrape(), "aggregator_rows_inserted_total") === 30 || undefined, {
      timeoutMs: 30_000,
      retryErrors: true,
      what: "30 rows inserted on /metrics",
    });
    // A retry of a stored event, after its original was stored.
    await producer.send({ topic: pipeline.topics.events, acks: -1, messages: [encode(events[0] ?? usageEvent())] });
    await producer.disconnect();
    const text = await pollUntil(
      async () => {
        const now = await scrape();
        return sample(now, "aggregator_duplicates_dropped_total") === 1 && now;
      },
      { timeoutMs: 10_000, what: "the duplicate counted" },
    );

    const named = [...new Set(INGEST_PATH.match(/\baggregator_[a-z_]+\b/g) ?? [])];
    expect(named.length).toBeGreaterThanOrEqual(9);
    for (const name of named) expect(text, `/metrics lacks ${name}`).toMatch(new RegExp(`^# TYPE ${name} `, "m"));
    expect(sample(text, "aggregator_events_consumed_total")).toBe(32);
    expect(sample(text, "aggregator_dlq_total")).toBe(1);
    expect(text).toMatch(/^aggregator_insert_duration_seconds_count [1-9]/m);
    expect(text).toMatch(/^aggregator_consumer_lag\{partition="\d"\} 0$/m);
    expect(await stopGracefully(child)).toBe(0);
    await expectExactly(pipeline, events);
  });

  it("exits when kafkajs gives up on the consumer, so the supervisor restarts it", async () => {
    const pipeline = await createTestPipeline("agg_fatal", { partitions: 1 });
    pipelines.push(pipeline);
    // Below the broker's group.min.session.timeout.ms (6 s): the join fails with a
    // non-retriable error and kafkajs stops the consumer for good (CRASH, restart: false).
    const child = spawnAggregator(pipeline, { AGGREGATOR_SESSION_TIMEOUT_MS: "1000" });
    expect(await exitOf(child, 30_000)).toBe(1);
  });
});
