import { request as httpRequest } from "node:http";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import { KafkaPublisher, PartitionCount, type UsageEvent } from "@keymeter/shared/usage";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { INGEST_TOKEN, type IngestServer, startIngest } from "../support/ingest-server";
import { createTestPipeline, type TestPipeline, usageEvent } from "../support/pipeline";

/**
 * Posts `bytes` of body over a fresh connection, writing with back-pressure, and reads the
 * answer. Any socket error (a broken pipe while still sending) fails it, even after a status.
 */
function postHuge(url: string, bytes: number, chunked: boolean): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      authorization: `Bearer ${INGEST_TOKEN}`,
      "content-type": "application/cloudevents-batch+json",
      ...(chunked ? {} : { "content-length": String(bytes) }),
    };
    const req = httpRequest(`${url}/v1/events`, { method: "POST", headers, agent: false });
    let failed: Error | undefined;
    req.on("error", (error) => {
      failed = error;
      reject(error);
    });
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => {
        // Let a late EPIPE/ECONNRESET from the upload surface before calling it a success.
        setImmediate(() => {
          if (failed) return;
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
          } catch (error) {
            reject(error);
          }
        });
      });
    });
    const chunk = Buffer.alloc(1024 * 1024, "[");
    let sent = 0;
    const write = () => {
      while (sent < bytes) {
        const piece = chunk.subarray(0, Math.min(chunk.length, bytes - sent));
        sent += piece.length;
        if (!req.write(piece)) return void req.once("drain", write);
      }
      req.end();
    };
    write();
  });
}

describe("HTTP ingest: bad input and wrong credentials", () => {
  let pipeline: TestPipeline;
  let ingest: IngestServer;
  const published: UsageEvent[][] = [];
  beforeAll(async () => {
    pipeline = await createTestPipeline("ingest_bad");
    // Records what would reach Kafka, to prove refused requests publish nothing.
    ingest = await startIngest(pipeline, {
      publisher: { publish: async (events) => void published.push(events.map((e) => JSON.parse(e.value))) },
      maxBodyBytes: 4096,
    });
  });
  afterAll(async () => {
    await ingest.close();
    await pipeline.close();
  });

  it("refuses a missing or wrong token with 401 and a JSON error", async () => {
    const body = JSON.stringify(usageEvent());
    for (const authorization of ["", "Bearer wrong-token", `Basic ${INGEST_TOKEN}`, INGEST_TOKEN]) {
      const answer = await ingest.post("/v1/events", body, { authorization });
      expect(answer.status).toBe(401);
      expect(answer.json).toMatchObject({ error: { code: "unauthenticated", request_id: expect.any(String) } });
    }
    expect(published).toEqual([]);
  });

  it("names each invalid event and still accepts the valid ones", async () => {
    published.length = 0;
    const events = [
      usageEvent({ id: "ok-1" }),
      { ...usageEvent(), time: "not a time" },
      usageEvent({}, { status: 1000 }),
    ];
    const answer = await ingest.post("/v1/events", JSON.stringify(events), {
      "content-type": "application/cloudevents-batch+json",
    });
    expect(answer.status).toBe(202);
    expect(answer.json).toEqual({
      accepted: 1,
      rejected: [
        { index: 1, error: expect.stringContaining("time:") },
        { index: 2, error: expect.stringContaining("data.status:") },
      ],
    });
    expect(published.flat().map((e) => e.id)).toEqual(["ok-1"]);
  });

  it("answers 400 when no event is valid, naming the fields", async () => {
    const answer = await ingest.post("/v1/events", JSON.stringify({ specversion: "1.0" }));
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({
      error: { code: "invalid_event" },
      rejected: [{ index: 0, error: expect.stringContaining("id:") }],
    });
  });

  it("explains malformed JSON, oversized bodies, wrong media types and non-array batches", async () => {
    expect(await ingest.post("/v1/events", "{oops")).toMatchObject({
      status: 400,
      json: { error: { message: "body is not valid JSON" } },
    });
    const huge = JSON.stringify({ ...usageEvent(), padding: "x".repeat(10_000) });
    expect(await ingest.post("/v1/events", huge)).toMatchObject({
      status: 413,
      json: { error: { code: "payload_too_large" } },
    });
    expect(await ingest.post("/v1/events", "hello", { "content-type": "text/plain" })).toMatchObject({
      status: 415,
      json: { error: { code: "unsupported_media_type" } },
    });
    expect(
      await ingest.post("/v1/events", JSON.stringify(usageEvent()), {
        "content-type": "application/cloudevents-batch+json",
      }),
    ).toMatchObject({ status: 400, json: { error: { message: "a batch body must be a JSON array of events" } } });
  });

  it("answers a 20 MiB body with a readable 413 JSON every time, never a broken pipe", async () => {
    published.length = 0;
    for (let attempt = 0; attempt < 5; attempt++) {
      // With a content-length the body is refused before it is read; chunked, after the limit.
      const answer = await postHuge(ingest.url, 20 * 1024 * 1024, attempt % 2 === 1);
      expect(answer, `attempt ${attempt}`).toMatchObject({
        status: 413,
        body: { error: { code: "payload_too_large" } },
      });
    }
    expect(published).toEqual([]);
  });

  it("accepts media types in any case, with parameters, and a lower-case bearer scheme", async () => {
    published.length = 0;
    const structured = await ingest.post("/v1/events", JSON.stringify(usageEvent({ id: "case-1" })), {
      "content-type": "Application/CloudEvents+JSON; charset=utf-8",
      authorization: `bearer ${INGEST_TOKEN}`,
    });
    expect(structured).toMatchObject({ status: 202, json: { accepted: 1 } });
    const batch = await ingest.post("/v1/events", JSON.stringify([usageEvent({ id: "case-2" })]), {
      "content-type": "APPLICATION/CLOUDEVENTS-BATCH+JSON;charset=UTF-8",
      authorization: `BEARER ${INGEST_TOKEN}`,
    });
    expect(batch).toMatchObject({ status: 202, json: { accepted: 1 } });
    expect(published.flat().map((e) => e.id)).toEqual(["case-1", "case-2"]);
  });

  it("refuses calendar-invalid times that Date.parse would shift, naming the field", async () => {
    published.length = 0;
    const times = ["2026-02-30T10:00:00Z", "2025-02-29T10:00:00Z", "2026-04-31T00:00:00Z", "2026-03-01T24:00:00Z"];
    const answer = await ingest.post("/v1/events", JSON.stringify(times.map((time) => usageEvent({ time }))), {
      "content-type": "application/cloudevents-batch+json",
    });
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({
      rejected: times.map((_, index) => ({ index, error: expect.stringContaining("time: not a real date") })),
    });
    expect(published).toEqual([]);
  });

  it("rejects a Kong entry without a key id in consumer.custom_id", async () => {
    const entry = {
      request: { method: "GET", uri: "/x" },
      response: { status: 200 },
      started_at: Date.now(),
      consumer: { username: "acme" },
    };
    const answer = await ingest.post("/v1/kong", JSON.stringify(entry), { "content-type": "application/json" });
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ rejected: [{ index: 0, error: expect.stringContaining("subject:") }] });
  });

  it("answers 503 with Retry-After when Kafka does not acknowledge, without leaking internals", async () => {
    // A real Kafka publisher whose producer has no connection: the send fails as when the broker is away.
    const producer = createIdempotentProducer(pipeline.kafka);
    const failing = await startIngest(pipeline, {
      publisher: new KafkaPublisher(
        producer,
        pipeline.topics.events,
        new PartitionCount(pipeline.admin, pipeline.topics.events),
        2_000,
      ),
    });
    try {
      const answer = await failing.post("/v1/events", JSON.stringify(usageEvent()));
      expect(answer.status).toBe(503);
      expect(answer.headers.get("retry-after")).toBe("1");
      expect(answer.json).toEqual({
        error: {
          code: "service_unavailable",
          message: "Kafka did not acknowledge the events; retry with the same event ids",
          request_id: expect.any(String),
        },
      });
    } finally {
      await failing.close();
    }
  });
});
