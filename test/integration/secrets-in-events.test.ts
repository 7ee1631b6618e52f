import { generateSecret } from "@keymeter/shared/api-keys";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type IngestServer, readTopic, startIngest } from "../support/ingest-server";
import { call, KeyStack } from "../support/key-stack";
import { createTestPipeline, startTestAggregator, type TestPipeline, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

/** Nothing shaped like one of our secrets is stored in any field of any event (DESIGN rule 0). */
describe("secrets never reach events", () => {
  let pipeline: TestPipeline;
  let stack: KeyStack;
  beforeAll(async () => {
    pipeline = await createTestPipeline("secrets", { partitions: 1 });
    stack = new KeyStack();
  });
  afterAll(async () => {
    await stack.close();
    await pipeline.close();
  });

  it("the gateway's route template redacts a path segment holding a secret", async () => {
    const gw = await stack.gateway();
    const { key, secret } = await stack.registry.create({ customer_id: "cus_s", tier: "pro" });
    const leaked = generateSecret("km", "live");
    for (const path of [`/v1/files/${secret}`, `/v1/files/${leaked}/raw`, `/v1/${leaked.replaceAll("_", "%5F")}`]) {
      expect((await call(`${gw.url}${path}`, { headers: { authorization: `Bearer ${secret}` } })).status).toBe(200);
    }
    await gw.sink.flush();
    expect(gw.sink.forKey(key.id).map((e) => e.data.route)).toEqual([
      "/v1/files/:redacted",
      "/v1/files/:redacted/raw",
      "/v1/:redacted",
    ]);
    expect(JSON.stringify(gw.sink.events)).not.toContain(leaked.slice(8));
  });

  it("the HTTP ingest refuses a secret in any string field, naming it, and publishes none", async () => {
    const ingest: IngestServer = await startIngest(pipeline);
    try {
      const secret = generateSecret("km", "live");
      const events = [
        usageEvent({ id: "clean-1", subject: "key_secretstest01" }),
        usageEvent({}, { route: `/v1/files/${secret}` }),
        usageEvent({}, { customer_id: secret }),
        usageEvent({}, { tier: `t-${secret}` }),
        usageEvent({ source: `gw/${secret}` }),
        usageEvent({ id: secret }),
        usageEvent({ subject: secret }),
      ];
      const answer = await ingest.post("/v1/events", JSON.stringify(events), {
        "content-type": "application/cloudevents-batch+json",
      });
      expect(answer.status).toBe(202);
      expect(answer.json).toEqual({
        accepted: 1,
        rejected: ["data.route", "data.customer_id", "data.tier", "source", "id", "subject"].map((field, i) => ({
          index: i + 1,
          error: expect.stringContaining(`${field}:`),
        })),
      });
      expect(JSON.stringify(answer.json)).not.toContain(secret.slice(8));
      const kong = await ingest.post(
        "/v1/kong",
        JSON.stringify({
          request: { method: "GET", uri: `/v1/files/${secret}?x=1`, id: "kong-secret-path" },
          response: { status: 200 },
          started_at: Date.now(),
          consumer: { custom_id: "key_secretstest02" },
        }),
        { "content-type": "application/json" },
      );
      expect(kong).toMatchObject({ status: 202, json: { accepted: 1 } });
      const published = await readTopic(pipeline, 2);
      expect(published.map((e) => e.id).sort()).toEqual(["clean-1", "kong-secret-path"]);
      expect(JSON.stringify(published)).not.toContain(secret.slice(8));
      expect(published.find((e) => e.id === "kong-secret-path")).toMatchObject({
        data: { route: "/v1/files/:redacted" },
      });
    } finally {
      await ingest.close();
    }
  });

  it("the aggregator dead-letters events with a secret or an impossible date from a direct producer, redacted", async () => {
    const pipeline = await createTestPipeline("secrets_dlq", { partitions: 1 });
    const secret = generateSecret("km", "live");
    const bad = [
      usageEvent({ id: "direct-customer" }, { customer_id: secret }),
      usageEvent({ id: "direct-route" }, { route: `/v1/${secret}` }),
      usageEvent({ id: "direct-date", time: "2026-02-30T10:00:00Z" }),
    ];
    const producer = createIdempotentProducer(pipeline.kafka);
    await producer.connect();
    await producer.send({
      topic: pipeline.topics.events,
      acks: -1,
      messages: bad.map((e) => ({ key: e.subject, value: JSON.stringify(e) })),
    });
    await producer.disconnect();
    const aggregator = await startTestAggregator(pipeline);
    const dlq: Array<{ value: string; error: string }> = [];
    const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-dlq-reader` });
    try {
      await consumer.connect();
      await consumer.subscribe({ topic: pipeline.topics.deadLetter, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) =>
          void dlq.push({ value: String(message.value), error: String(message.headers?.["x-error"]) }),
      });
      await waitFor("3 DLQ messages", () => dlq.length === 3);
      expect(dlq.map((d) => d.error).sort()).toEqual([
        expect.stringContaining("data.customer_id: holds an API key secret"),
        expect.stringContaining("data.route: holds an API key secret"),
        expect.stringContaining("time: not a real date"),
      ]);
      expect(JSON.stringify(dlq)).not.toContain(secret.slice(8));
      expect(dlq.map((d) => JSON.parse(d.value).id).sort()).toEqual(["direct-customer", "direct-date", "direct-route"]);
      expect(await pipeline.rawRows()).toBe(0);
    } finally {
      await consumer.disconnect();
      await aggregator.stop();
      await pipeline.close();
    }
  });
});
