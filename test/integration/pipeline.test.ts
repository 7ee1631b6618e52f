import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClickHouse } from "@keymeter/shared/stores";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../support/isolated-services";
import { services, uniqueName } from "../support/services";

const PIPELINE = join(import.meta.dirname, "../../infra/local/pipeline.ts");

describe("npm run pipeline (the README's first command, after services.sh up)", () => {
  const database = uniqueName("pipeline");
  afterAll(async () => {
    const clickhouse = createClickHouse({
      url: services().clickhouseUrl,
      username: "default",
      password: "",
      database: "default",
    });
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await clickhouse.close();
  });

  it("starts every service and counts a key's requests through gateway and ingest once each", async () => {
    const env = {
      ...process.env,
      KAFKA_BROKERS: services().kafkaBrokers.join(","),
      CLICKHOUSE_URL: services().clickhouseUrl,
      REDIS_URL: services().redisUrl,
      CLICKHOUSE_DATABASE: database,
      KAFKA_TOPIC_PREFIX: `${database}.`,
      KEYMETER_DATA_DIR: mkdtempSync(join(tmpdir(), "pipeline-")),
      GATEWAY_PORT: String(await freePort()),
      ADMIN_PORT: String(await freePort()),
      INGEST_PORT: String(await freePort()),
      DEMO_UPSTREAM_PORT: String(await freePort()),
      AGGREGATOR_METRICS_PORT: String(await freePort()),
      QUOTA_WORKER_METRICS_PORT: String(await freePort()),
      LOG_LEVEL: "warn",
    };
    const child = spawn(process.execPath, ["--import", "tsx", PIPELINE, "--once"], { env });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(output).toContain("gateway: 5 requests with the key answered 200; a wrong key got 401");
    expect(output).toMatch(/usage_daily key_\w+ \/v1\/things\/:id: 5 requests/);
    expect(output).toMatch(/usage_daily key_\w+ \/v1\/batch: 3 requests/);
    expect(output).toContain("smoke: ok");
    expect(code).toBe(0);
  }, 120_000);
});
