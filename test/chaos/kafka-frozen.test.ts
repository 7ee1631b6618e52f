import { spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@keymeter/shared/runtime";
import { type EmitterStats, KafkaEmitter, type UsageEventInput, unpackEvents } from "@keymeter/shared/usage";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startIngest } from "../support/ingest-server";
import { IsolatedServices } from "../support/isolated-services";
import { LogCapture } from "../support/key-stack";
import { createTestPipeline, type TestPipeline, usageEvent } from "../support/pipeline";
import { waitFor } from "../support/poll";

const EMITTER_PROCESS = join(import.meta.dirname, "../support/emitter-process.ts");

/**
 * Kafka that stops answering: a private broker frozen with SIGSTOP. Connections stay open and
 * nothing is acknowledged, the case a deadline must catch (a stopped broker refuses
 * connections at once, which any client notices).
 */
describe("Kafka frozen (private broker, SIGSTOP): emitter and ingest deadlines", () => {
  let services: IsolatedServices;
  let pipeline: TestPipeline;
  let frozen = false;
  const freeze = () => {
    services.freeze("kafka");
    frozen = true;
  };
  const thaw = () => {
    if (frozen) services.thaw("kafka");
    frozen = false;
  };
  const closers: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    services = await IsolatedServices.create();
    services.up("kafka");
    pipeline = await createTestPipeline("frozen", { kafkaBrokers: services.kafkaBrokers, partitions: 3 });
  }, 120_000);
  afterEach(async () => {
    thaw();
    for (const close of closers.splice(0).reverse()) await close();
  });
  afterAll(async () => {
    thaw();
    await pipeline?.close();
    services.destroy();
  }, 60_000);

  const emitter = async (options: Partial<ConstructorParameters<typeof KafkaEmitter>[0]> = {}) => {
    const created = new KafkaEmitter({
      kafka: pipeline.kafka,
      topic: pipeline.topics.events,
      logger: createLogger("test", "silent"),
      spoolDir: await mkdtemp(join(tmpdir(), "emitter-spool-")),
      replayIntervalMs: 300,
      ...options,
    });
    await created.start();
    closers.push(() => created.close());
    return created;
  };
  /** Reads the topic from the start until every id in `wanted` was seen; returns those missing at the deadline. */
  const missingOnTopic = async (wanted: string[]): Promise<string[]> => {
    const missing = new Set(wanted);
    const consumer = pipeline.kafka.consumer({ groupId: `${pipeline.name}-reader-${Date.now()}` });
    await consumer.connect();
    await consumer.subscribe({ topic: pipeline.topics.events, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        for (const line of unpackEvents(message.value)) missing.delete((JSON.parse(String(line)) as { id: string }).id);
      },
    });
    await waitFor(`${wanted.length} ids on the topic`, () => missing.size === 0, 20_000).catch(() => undefined);
    await consumer.disconnect();
    return [...missing];
  };

  it("emitter: a batch not acknowledged within 5 s goes to the spool with everything after it; emit() never waits or throws", async () => {
    const sink = await emitter(); // the default sendTimeoutMs: the README's 5 s
    const sent: UsageEventInput[] = Array.from({ length: 5_100 }, () => usageEvent());
    let next = 0;
    const emit = (n: number) => {
      for (const stop = next + n; next < stop; next++) sink.emit(sent[next] as UsageEventInput);
    };
    emit(50);
    await sink.flush();
    expect(sink.stats.sent).toBe(50);

    freeze();
    const frozenAt = Date.now();
    emit(50);
    // While the batch waits for its acknowledgement, emitting stays a memory append.
    let slowest = 0;
    let thrown: unknown;
    const loopStarted = performance.now();
    for (let i = 0; i < 5_000; i++) {
      const started = performance.now();
      try {
        emit(1);
      } catch (error) {
        thrown = error;
      }
      slowest = Math.max(slowest, performance.now() - started);
    }
    expect(thrown).toBeUndefined();
    // Nowhere near the 5 s acknowledgement deadline it would wait for if it blocked (loose
    // bounds: a loaded CI machine can pause a process for tens of milliseconds at any call).
    expect(performance.now() - loopStarted).toBeLessThan(1_000);
    expect(slowest).toBeLessThan(500);
    await sink.flush(); // resolves once everything is acknowledged or spooled
    const waited = Date.now() - frozenAt;
    expect(waited).toBeGreaterThanOrEqual(4_900);
    expect(waited).toBeLessThan(9_000);
    expect(sink.stats).toMatchObject({ sent: 50, spooled: 5_050, dropped: 0, buffered: 0 });

    thaw();
    await waitFor("the spool replayed", () => sink.stats.spoolBytes === 0 && sink.stats.sent >= 5_100, 30_000);
    expect(await missingOnTopic(sent.map((e) => e.id))).toEqual([]);
  }, 60_000);

  it("emitter: a restarted process replays what a SIGKILLed one left in its spool", async () => {
    const spoolDir = await mkdtemp(join(tmpdir(), "emitter-crash-"));
    freeze();
    const child = spawn(process.execPath, ["--import", "tsx", EMITTER_PROCESS], {
      env: {
        ...process.env,
        KAFKA_BROKERS: services.kafkaBrokers.join(","),
        TOPIC: pipeline.topics.events,
        SPOOL_DIR: spoolDir,
        COUNT: "500",
        ID_PREFIX: "crashed",
        SEND_TIMEOUT_MS: "1000",
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const stats = await new Promise<EmitterStats>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const line = /FLUSHED (\{.*\})/.exec(out)?.[1];
        if (line) resolve(JSON.parse(line) as EmitterStats);
      });
      child.once("exit", (code) => reject(new Error(`emitter process exited early (${code})`)));
    });
    expect(stats).toMatchObject({ sent: 0, spooled: 500, dropped: 0 });
    await new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.kill("SIGKILL");
    });
    thaw();

    const restarted = await emitter({ spoolDir });
    await waitFor("the dead process's spool replayed", () => restarted.stats.sent === 500, 30_000);
    expect(restarted.stats.spoolBytes).toBe(0);
    expect(await missingOnTopic(Array.from({ length: 500 }, (_, n) => `crashed-${n}`))).toEqual([]);
  }, 60_000);

  it("emitter: drops only when the buffer or the spool is full, counted in stats.dropped and logged", async () => {
    const logs = new LogCapture();
    const logger = createLogger("test", "warn", logs);
    // Buffer: no batch is due (large batch, long linger), so the 25 events wait in memory.
    const buffered = await emitter({ logger, maxBufferedEvents: 10, maxBatchEvents: 1_000, lingerMs: 60_000 });
    for (let i = 0; i < 25; i++) expect(() => buffered.emit(usageEvent())).not.toThrow();
    expect(buffered.stats).toMatchObject({ buffered: 10, dropped: 15 });
    expect(logs.text).toMatch(/"reason":"buffer full".*usage events dropped/);

    // Spool: Kafka does not answer and the spool holds a few kilobytes.
    freeze();
    const spooling = await emitter({ logger, maxSpoolBytes: 4_096, sendTimeoutMs: 500 });
    const events = Array.from({ length: 100 }, () => usageEvent());
    for (const event of events) spooling.emit(event);
    await spooling.flush();
    const { spooled, dropped, spoolBytes } = spooling.stats;
    expect(spooled).toBeGreaterThan(0);
    expect(dropped).toBe(100 - spooled);
    expect(spoolBytes).toBeLessThanOrEqual(4_096);
    expect(logs.text).toMatch(/"reason":"spool full".*usage events dropped/);
    thaw();
    await waitFor("the spool replayed", () => spooling.stats.spoolBytes === 0, 30_000);
    // What was counted as spooled arrived (the first ones, in order); only the dropped are missing.
    const ids = events.map((e) => e.id);
    expect(await missingOnTopic(ids.slice(0, spooled))).toEqual([]);
  }, 60_000);

  it("ingest: answers 202 only once Kafka acknowledged the events", async () => {
    const ingest = await startIngest(pipeline, { ackTimeoutMs: 10_000 });
    closers.push(() => ingest.close());
    const events = [usageEvent(), usageEvent(), usageEvent()];
    freeze();
    let answeredAt = 0;
    const answer = ingest
      .post("/v1/events", JSON.stringify(events), { "content-type": "application/cloudevents-batch+json" })
      .then((response) => {
        answeredAt = Date.now();
        return response;
      });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(answeredAt).toBe(0);
    const thawedAt = Date.now();
    thaw();
    expect(await answer).toMatchObject({ status: 202, json: { accepted: 3, rejected: [] } });
    expect(answeredAt).toBeGreaterThanOrEqual(thawedAt);
    expect(await missingOnTopic(events.map((e) => e.id))).toEqual([]);
  }, 30_000);

  it("ingest: answers 503 with Retry-After when Kafka does not acknowledge in time", async () => {
    const ingest = await startIngest(pipeline, { ackTimeoutMs: 2_000 });
    closers.push(() => ingest.close());
    freeze();
    const started = Date.now();
    const answer = await ingest.post("/v1/events", JSON.stringify(usageEvent()));
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_900);
    expect(answer.status).toBe(503);
    expect(answer.headers.get("retry-after")).toBe("1");
    expect(answer.json).toMatchObject({ error: { code: "service_unavailable" } });
  }, 30_000);
});
