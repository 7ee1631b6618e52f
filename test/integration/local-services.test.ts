import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { freePort } from "../support/isolated-services";

const SCRIPT = join(import.meta.dirname, "../../infra/local/services.sh");

/** Runs services.sh against a throw-away data folder and free ports, so the shared services are untouched. */
function runScript(args: string[], env: Record<string, string>) {
  const result = spawnSync("bash", [SCRIPT, ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

async function isolatedEnv(): Promise<Record<string, string>> {
  const env = {
    KEYMETER_DATA_DIR: mkdtempSync(join(tmpdir(), "keymeter-data-")),
    REDIS_PORT: String(await freePort()),
    CLICKHOUSE_HTTP_PORT: String(await freePort()),
    CLICKHOUSE_TCP_PORT: String(await freePort()),
  };
  cleanups.push(() => runScript(["down"], env));
  return env;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("infra/local/services.sh", () => {
  it("is harmless to start twice and leaves no process after down", async () => {
    const env = await isolatedEnv();
    expect(runScript(["up", "redis"], env).code).toBe(0);
    const pid = Number(readFileSync(join(env.KEYMETER_DATA_DIR as string, "redis/pid"), "utf8"));
    expect(alive(pid)).toBe(true);

    const again = runScript(["up", "redis"], env);
    expect(again.code).toBe(0);
    expect(Number(readFileSync(join(env.KEYMETER_DATA_DIR as string, "redis/pid"), "utf8"))).toBe(pid);

    expect(runScript(["down", "redis"], env).stdout).toContain("redis stopped");
    expect(alive(pid)).toBe(false);
    expect(runScript(["status", "redis"], env).stdout.trim()).toBe("redis: stopped");
  });

  it("names a port held by another process in one line", async () => {
    const env = await isolatedEnv();
    const squatter: Server = await new Promise((resolve) => {
      const server = createServer().listen(Number(env.REDIS_PORT), "127.0.0.1", () => resolve(server));
    });
    cleanups.push(() => squatter.close());
    const result = runScript(["up", "redis"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `services: port ${env.REDIS_PORT} for redis is already in use by another process (set REDIS_PORT to another port, or stop that process)\n`,
    );
  });

  it("names a malformed variable", async () => {
    const result = runScript(["up"], { ...(await isolatedEnv()), KAFKA_PORT: "nine" });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe("services: KAFKA_PORT must be a whole number, got 'nine'\n");
  });

  it("says which service did not come up in time", async () => {
    const env = { ...(await isolatedEnv()), KEYMETER_START_TIMEOUT_S: "0" };
    const result = runScript(["up", "clickhouse"], env);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^services: clickhouse did not become healthy within 0s \(log: .+\)\n$/);
  });
});

describe("docker-compose.yml", () => {
  it("parses and names every service the local scripts start", () => {
    const compose = parse(readFileSync(join(import.meta.dirname, "../../docker-compose.yml"), "utf8")) as {
      services: Record<string, { image?: string; ports?: string[] }>;
    };
    const status = runScript(["status"], { KEYMETER_DATA_DIR: mkdtempSync(join(tmpdir(), "keymeter-data-")) });
    const localServices = status.stdout
      .trim()
      .split("\n")
      .map((line) => line.split(":")[0]);
    expect(localServices).toEqual(["redis", "clickhouse", "kafka", "stripe-mock"]);
    for (const name of localServices) expect(Object.keys(compose.services)).toContain(name);
    expect(compose.services.kafka?.image).toBe("apache/kafka:3.9.1");
    expect(compose.services["stripe-mock"]?.image).toBe("stripe/stripe-mock:v0.203.0");
    // Every image pinned to a release (no `latest`, no bare major line like `redis:7`).
    for (const [name, service] of Object.entries(compose.services)) {
      expect(service.image, `${name} image`).toMatch(/^[a-z0-9./-]+:v?\d+\.\d+\.\d+(\.\d+)?$/);
    }
    // ClickHouse on the release line of the current engine the suite runs (chdb-core X.Y.Z is ClickHouse X.Y).
    const requirements = readFileSync(join(import.meta.dirname, "../support/chdb/requirements.txt"), "utf8");
    const chdbLine = /^chdb-core==(\d+\.\d+)\./m.exec(requirements)?.[1];
    expect(chdbLine).toBeDefined();
    expect(compose.services.clickhouse?.image).toMatch(
      new RegExp(`^clickhouse/clickhouse-server:${chdbLine?.replace(".", "\\.")}\\.`),
    );
    // Redis on the release line of the Debian redis-server the suite runs against.
    const redis = spawnSync("redis-server", ["--version"], { encoding: "utf8" }).stdout ?? "";
    const redisLine = /v=(\d+\.\d+)\./.exec(redis)?.[1];
    if (redisLine)
      expect(compose.services.redis?.image).toMatch(new RegExp(`^redis:${redisLine.replace(".", "\\.")}\\.`));
    // Every deployable in services/ runs in the compose topology too.
    const deployables = readdirSync(join(import.meta.dirname, "../../services"), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => entry.name);
    expect(deployables.length).toBeGreaterThan(0);
    for (const name of deployables) expect(Object.keys(compose.services)).toContain(name);
    // Published on loopback only, like the local scripts.
    for (const service of Object.values(compose.services)) {
      for (const port of service.ports ?? []) expect(port).toMatch(/^127\.0\.0\.1:/);
    }
  });
});
