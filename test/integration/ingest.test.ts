import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type IngestServer, readTopic, startIngest } from "../support/ingest-server";
import { createTestPipeline, type TestPipeline, usageEvent } from "../support/pipeline";

describe("HTTP ingest -> Kafka", () => {
  let pipeline: TestPipeline;
  let ingest: IngestServer;
  beforeAll(async () => {
    pipeline = await createTestPipeline("ingest");
    ingest = await startIngest(pipeline);
  });
  afterAll(async () => {
    await ingest.close();
    await pipeline.close();
  });

  it("accepts structured, batch and binary CloudEvents and a Kong http-log batch; 202 after Kafka has them", async () => {
    const single = usageEvent({ id: "structured-1" });
    expect(await ingest.post("/v1/events", JSON.stringify(single))).toMatchObject({
      status: 202,
      json: { accepted: 1, rejected: [] },
    });

    const batch = [usageEvent({ id: "batch-1" }), usageEvent({ id: "batch-2" })];
    const batchAnswer = await ingest.post("/v1/events", JSON.stringify(batch), {
      "content-type": "application/cloudevents-batch+json",
    });
    expect(batchAnswer).toMatchObject({ status: 202, json: { accepted: 2 } });

    const binary = await ingest.post(
      "/v1/events",
      JSON.stringify({ method: "POST", route: "/v1/orders", status: 201, latency_ms: 9 }),
      {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "binary-1",
        "ce-source": "envoy-1",
        "ce-type": "api.request",
        "ce-subject": "key_binary0001",
        "ce-time": "2026-11-29T10:00:00Z",
      },
    );
    expect(binary).toMatchObject({ status: 202, json: { accepted: 1 } });

    const kong = [
      {
        request: { method: "get", uri: "/v1/users/42?verbose=1", size: 120, id: "kong-req-1" },
        response: { status: 200, size: 2048 },
        latencies: { request: 31, kong: 2, proxy: 29 },
        started_at: Date.parse("2026-11-29T11:00:00Z"),
        consumer: { custom_id: "key_kongcons01", username: "acme" },
      },
    ];
    expect(await ingest.post("/v1/kong", JSON.stringify(kong), { "content-type": "application/json" })).toMatchObject({
      status: 202,
      json: { accepted: 1 },
    });

    const messages = await readTopic(pipeline, 5);
    const byId = new Map(messages.map((m) => [m.id, m]));
    expect([...byId.keys()].sort()).toEqual(["batch-1", "batch-2", "binary-1", "kong-req-1", "structured-1"]);
    expect(byId.get("binary-1")).toMatchObject({
      source: "envoy-1",
      subject: "key_binary0001",
      data: { method: "POST", status: 201 },
    });
    expect(byId.get("kong-req-1")).toMatchObject({
      source: "kong-test",
      subject: "key_kongcons01",
      time: "2026-11-29T11:00:00.000Z",
      data: {
        method: "GET",
        route: "/v1/users/:id",
        status: 200,
        latency_ms: 31,
        request_bytes: 120,
        response_bytes: 2048,
      },
    });
  });

  it("records a Kong entry that Kong answered itself (429, proxy latency -1, no tries) with units 0", async () => {
    const refused = {
      request: { method: "GET", uri: "/v1/users/7", size: 80, id: "kong-refused-1" },
      response: { status: 429, size: 60 },
      latencies: { request: 1, kong: 1, proxy: -1 },
      started_at: Date.parse("2026-11-29T12:00:00Z"),
      consumer: { custom_id: "key_kongcons02" },
    };
    const served = {
      ...refused,
      request: { ...refused.request, id: "kong-served-1" },
      response: { status: 200, size: 900 },
      latencies: { request: 12, kong: 1, proxy: 11 },
      tries: [{ ip: "10.0.0.5", port: 8000, balancer_latency: 0 }],
    };
    const own = await createTestPipeline("ingest_kong_units", { partitions: 1 });
    const kongIngest = await startIngest(own);
    let messages: Array<Record<string, unknown>>;
    try {
      const answer = await kongIngest.post("/v1/kong", JSON.stringify([refused, served]), {
        "content-type": "application/json",
      });
      expect(answer).toMatchObject({ status: 202, json: { accepted: 2 } });
      messages = await readTopic(own, 2);
    } finally {
      await kongIngest.close();
      await own.close();
    }
    const byId = new Map(messages.map((m) => [m.id, m]));
    expect(byId.get("kong-refused-1")).toMatchObject({ data: { status: 429, units: 0 } });
    expect(byId.get("kong-served-1")).toMatchObject({ data: { status: 200, units: 1 } });
  });
});
