import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../support/isolated-services";
import { createTestPipeline, type TestPipeline, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

const MAIN = join(import.meta.dirname, "../../services/ingest/src/main.ts");
const OLD_TOKEN = "old-ingest-token-0123456789abcdef";
const NEW_TOKEN = "new-ingest-token-0123456789abcdef";

/** The ingest service as `npm run ingest` runs it, configured only through its environment. */
describe("ingest service (npm run ingest, as a process)", () => {
  let pipeline: TestPipeline;
  let child: ChildProcess;
  let url = "";
  beforeAll(async () => {
    pipeline = await createTestPipeline("ingest_service", { partitions: 3 });
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, ["--import", "tsx", MAIN], {
      env: {
        ...process.env,
        KAFKA_BROKERS: pipeline.kafkaBrokers.join(","),
        KAFKA_TOPIC_PREFIX: `${pipeline.name}.`,
        INGEST_PORT: String(port),
        // Two tokens while rotating, with the spaces an operator may type.
        INGEST_TOKENS: `${OLD_TOKEN}, ${NEW_TOKEN}`,
        INGEST_MAX_BATCH_EVENTS: "5",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "ignore", "inherit"],
    });
    await waitFor("ingest listening", async () => (await fetch(`${url}/healthz`)).ok, 30_000);
  }, 60_000);
  afterAll(async () => {
    if (child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      });
    }
    await pipeline?.close();
  });

  const post = (token: string, events: unknown[]) =>
    fetch(`${url}/v1/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/cloudevents-batch+json" },
      body: JSON.stringify(events),
    });

  it("accepts every token of a comma-separated INGEST_TOKENS (rotation) and nothing else", async () => {
    expect((await post(OLD_TOKEN, [usageEvent()])).status).toBe(202);
    expect((await post(NEW_TOKEN, [usageEvent()])).status).toBe(202);
    expect((await post(`${OLD_TOKEN},${NEW_TOKEN}`, [usageEvent()])).status).toBe(401);
    expect((await post("another-token-0123456789abcdef", [usageEvent()])).status).toBe(401);
  });

  it("answers 413 over INGEST_MAX_BATCH_EVENTS, publishing nothing of the request", async () => {
    const atLimit = await post(
      NEW_TOKEN,
      Array.from({ length: 5 }, () => usageEvent()),
    );
    expect(atLimit.status).toBe(202);
    const over = Array.from({ length: 6 }, () => usageEvent());
    const answer = await post(NEW_TOKEN, over);
    expect(answer.status).toBe(413);
    expect(await answer.json()).toMatchObject({
      error: { code: "payload_too_large", message: "at most 5 events per request, got 6" },
    });
    // Nothing of the refused request reached Kafka: 2 + 5 events, from the two tests.
    const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-reader` });
    await consumer.connect();
    await consumer.subscribe({ topic: pipeline.topics.events, fromBeginning: true });
    const ids = new Set<string>();
    await consumer.run({
      eachMessage: async ({ message }) => {
        for (const line of String(message.value).split("\n")) ids.add((JSON.parse(line) as { id: string }).id);
      },
    });
    await waitFor("the topic read", () => ids.size >= 7, 15_000);
    await consumer.disconnect();
    expect(over.filter((e) => ids.has(e.id))).toEqual([]);
    expect(ids.size).toBe(7);
  });
});
