import { buildIngestApp } from "@keymeter/ingest";
import type { KeyAttributor } from "@keymeter/shared/api-keys";
import { createLogger } from "@keymeter/shared/runtime";
import { createIdempotentProducer } from "@keymeter/shared/stores";
import { KafkaPublisher, PartitionCount, type UsageEventPublisher, unpackEvents } from "@keymeter/shared/usage";
import type { FastifyInstance } from "fastify";
import type { Producer } from "kafkajs";
import type { TestPipeline } from "./pipeline";

export const INGEST_TOKEN = "test-ingest-token-0123456789abcdef";

export interface IngestServer {
  url: string;
  post(
    path: string,
    body: string,
    headers?: Record<string, string>,
  ): Promise<{ status: number; json: unknown; headers: Headers }>;
  close(): Promise<void>;
}

/** The ingest API on a free loopback port, publishing to the pipeline's topic (or to `publisher`). */
export async function startIngest(
  pipeline: TestPipeline,
  options: {
    publisher?: UsageEventPublisher;
    maxBodyBytes?: number;
    attribution?: KeyAttributor;
    /** How long a publish may wait for Kafka's acknowledgement (main.ts: 10 s). */
    ackTimeoutMs?: number;
  } = {},
): Promise<IngestServer> {
  let producer: Producer | undefined;
  let publisher = options.publisher;
  if (!publisher) {
    producer = createIdempotentProducer(pipeline.kafka);
    await producer.connect();
    publisher = new KafkaPublisher(
      producer,
      pipeline.topics.events,
      new PartitionCount(pipeline.admin, pipeline.topics.events),
      options.ackTimeoutMs ?? 10_000,
    );
  }
  const app: FastifyInstance = buildIngestApp({
    publisher,
    tokens: [INGEST_TOKEN],
    logger: createLogger("ingest-test", "silent"),
    maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
    maxBatchEvents: 1000,
    kongSource: "kong-test",
    ...(options.attribution ? { attribution: options.attribution } : {}),
  });
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  return {
    url: address,
    async post(path, body, headers = {}) {
      const response = await fetch(`${address}${path}`, {
        method: "POST",
        body,
        headers: {
          authorization: `Bearer ${INGEST_TOKEN}`,
          "content-type": "application/cloudevents+json",
          ...headers,
        },
      });
      const text = await response.text();
      let json: unknown = text;
      try {
        json = JSON.parse(text);
      } catch {
        // not JSON: keep the text for the assertion message
      }
      return { status: response.status, json, headers: response.headers };
    },
    async close() {
      await app.close();
      await producer?.disconnect();
    },
  };
}

/** Every event on the pipeline's events topic, parsed. */
export async function readTopic(pipeline: TestPipeline, expected: number): Promise<Array<Record<string, unknown>>> {
  const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-reader-${Date.now()}` });
  await consumer.connect();
  await consumer.subscribe({ topic: pipeline.topics.events, fromBeginning: true });
  const seen: Array<Record<string, unknown>> = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${seen.length} of ${expected} messages`)), 20_000);
    void consumer.run({
      eachMessage: async ({ message }) => {
        for (const line of unpackEvents(message.value)) seen.push(JSON.parse(String(line)) as Record<string, unknown>);
        if (seen.length >= expected) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  return seen;
}
