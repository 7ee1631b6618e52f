import { KeyAttributor } from "@keymeter/shared/api-keys";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type IngestServer, startIngest } from "../support/ingest-server";
import { KeyStack } from "../support/key-stack";
import { createTestPipeline, startTestAggregator, type TestPipeline, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

/**
 * Events reach ClickHouse with their key's customer and tier whichever way they came (HTTP
 * ingest, Kong logs naming an alias, a producer writing straight to Kafka); events of keys
 * the registry does not know are stored and reported, never dropped.
 */
describe("usage attribution from the key registry", () => {
  let pipeline: TestPipeline;
  let stack: KeyStack;
  let ingest: IngestServer;
  const stops: Array<() => Promise<void>> = [];
  beforeAll(async () => {
    pipeline = await createTestPipeline("attribution", { partitions: 2 });
    stack = new KeyStack();
    const attribution = () => new KeyAttributor({ redis: stack.redis, keys: stack.keys });
    ingest = await startIngest(pipeline, { attribution: attribution() });
    const aggregator = await startTestAggregator(pipeline, { attribution: attribution() });
    stops.push(() => aggregator.stop());
  });
  afterAll(async () => {
    for (const stop of stops) await stop();
    await ingest.close();
    await stack.close();
    await pipeline.close();
  });

  it("fills customer and tier, resolves aliases, keeps what the source said, reports unknown keys", async () => {
    const consumerId = "3f0c9a2e-1b2c-4d5e-8f90-123456789abc";
    const a = await stack.registry.create({ customer_id: "cus_a", tier: "free", aliases: ["kong-acme"] });
    const b = await stack.registry.create({ customer_id: "cus_b", tier: "pro" });
    await stack.registry.update(b.key.id, { aliases: [consumerId] });
    const kong = (id: string, consumer: Record<string, string>) => ({
      request: { method: "GET", uri: "/v1/things/1", id },
      response: { status: 200 },
      latencies: { request: 3, proxy: 2 },
      started_at: Date.now(),
      consumer,
    });

    const viaIngest = await ingest.post(
      "/v1/events",
      JSON.stringify([
        usageEvent({ id: "http-a", subject: a.key.id }),
        usageEvent({ id: "http-unknown", subject: "nobody-knows-me" }),
        usageEvent({ id: "http-said", subject: a.key.id }, { customer_id: "cus_said", tier: "enterprise" }),
      ]),
      { "content-type": "application/cloudevents-batch+json" },
    );
    expect(viaIngest).toMatchObject({ status: 202, json: { accepted: 3, unknown_subjects: ["nobody-knows-me"] } });
    const viaKong = await ingest.post(
      "/v1/kong",
      JSON.stringify([
        kong("kong-custom-id", { custom_id: "kong-acme" }),
        kong("kong-consumer-id", { id: consumerId }),
      ]),
      { "content-type": "application/json" },
    );
    expect(viaKong).toMatchObject({ status: 202, json: { accepted: 2 } });

    // A producer writing straight to Kafka: no customer or tier, an alias, an unknown key id.
    const direct = [
      usageEvent({ id: "kafka-b", subject: b.key.id }),
      usageEvent({ id: "kafka-alias", subject: "kong-acme" }),
      usageEvent({ id: "kafka-unknown", subject: "key_unknown00000001" }),
    ];
    const producer = createIdempotentProducer(pipeline.kafka);
    await producer.connect();
    await producer.send({
      topic: pipeline.topics.events,
      acks: -1,
      messages: direct.map((e) => ({ key: e.subject, value: JSON.stringify(e) })),
    });
    await producer.disconnect();

    await waitFor("8 rows", async () => (await pipeline.rawRows()) === 8);
    const result = await pipeline.clickhouse.query({
      query: "SELECT event_id, key_id, customer_id, tier FROM usage_events ORDER BY event_id",
      format: "JSONEachRow",
    });
    const rows = await result.json<{ event_id: string; key_id: string; customer_id: string; tier: string }>();
    const row = (key: string, customer: string, tier: string) => ({ key_id: key, customer_id: customer, tier });
    expect(Object.fromEntries(rows.map(({ event_id, ...rest }) => [event_id, rest]))).toEqual({
      "http-a": row(a.key.id, "cus_a", "free"),
      "http-said": row(a.key.id, "cus_said", "enterprise"),
      "http-unknown": row("nobody-knows-me", "", ""),
      "kong-custom-id": row(a.key.id, "cus_a", "free"),
      "kong-consumer-id": row(b.key.id, "cus_b", "pro"),
      "kafka-b": row(b.key.id, "cus_b", "pro"),
      "kafka-alias": row(a.key.id, "cus_a", "free"),
      "kafka-unknown": row("key_unknown00000001", "", ""),
    });

    // The rollup behind the view is written after the raw rows, by the same INSERT.
    const unknownKeys = async () =>
      (
        await pipeline.clickhouse.query({
          query: "SELECT subject, calls FROM v_unknown_keys ORDER BY subject",
          format: "JSONEachRow",
        })
      ).json();
    await waitFor("both unknown subjects in v_unknown_keys", async () => (await unknownKeys()).length === 2);
    expect(await unknownKeys()).toEqual([
      { subject: "key_unknown00000001", calls: "1" },
      { subject: "nobody-knows-me", calls: "1" },
    ]);
  });
});
