import { afterEach, describe, expect, it } from "vitest";
import { type ProcessOutput, spawnAggregator, stopGracefully } from "../support/aggregator-process";
import { freePort, IsolatedServices } from "../support/isolated-services";
import { createTestPipeline } from "../support/pipeline";
import { waitFor } from "../support/poll";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface LogLine {
  msg?: string;
  client?: string;
  occurrences?: number;
  time?: string;
}

const redisErrorLines = (output: ProcessOutput): LogLine[] =>
  output.stdout
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as LogLine)
    // One client's lines: each connection (commands, BullMQ) is rate-limited on its own.
    .filter((line) => line.msg?.startsWith("redis connection error") && line.client === "redis");

describe("aggregator: Redis stopped and restarted under it", () => {
  it("logs rate-limited structured lines (never 'Unhandled error event'); /healthz names redis, then recovers", async () => {
    const isolated = await IsolatedServices.create();
    cleanups.push(() => isolated.destroy());
    isolated.up("redis");
    const pipeline = await createTestPipeline("redis_outage", { partitions: 1 });
    cleanups.push(() => pipeline.close());
    const port = await freePort();
    const output: ProcessOutput = { stdout: "", stderr: "" };
    const child = spawnAggregator(
      pipeline,
      { REDIS_URL: `redis://127.0.0.1:${isolated.env.REDIS_PORT}`, METRICS_PORT: String(port), LOG_LEVEL: "info" },
      output,
    );
    cleanups.push(async () => {
      if (child.exitCode === null && child.signalCode === null) await stopGracefully(child);
    });
    const health = async () => {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`);
      return { status: response.status, body: (await response.json()) as { down?: string[] } };
    };
    await waitFor("the aggregator answers healthy", async () => (await health()).status === 200, 60_000).catch(
      async (error) => {
        throw new Error(`${(error as Error).message}; last answer ${JSON.stringify(await health().catch(String))}`);
      },
    );

    isolated.down("redis");
    await waitFor("/healthz answers 503 naming redis", async () => {
      const answer = await health();
      return answer.status === 503 && (answer.body.down ?? []).includes("redis");
    });
    // ioredis retries many times a second; a line every 10 s means two lines take over 10 s.
    await waitFor("two rate-limited redis lines", () => redisErrorLines(output).length >= 2, 45_000);
    isolated.up("redis");
    await waitFor("/healthz answers 200 again", async () => (await health()).status === 200, 30_000);

    expect(output.stderr).not.toContain("Unhandled error event");
    const lines = redisErrorLines(output);
    expect(lines[0]).toMatchObject({ client: "redis", occurrences: 1 });
    // Each later line counts the attempts it stands for, and lines are at least ~10 s apart.
    expect(lines[1]?.occurrences).toBeGreaterThan(1);
    for (let i = 1; i < lines.length; i++) {
      expect(Date.parse(lines[i]?.time ?? "") - Date.parse(lines[i - 1]?.time ?? "")).toBeGreaterThanOrEqual(9_000);
    }
  }, 150_000);
});
