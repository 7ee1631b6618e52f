/**
 * `npm run pipeline`: the whole pipeline on this machine, after `services.sh up` started
 * Kafka, ClickHouse and Redis. Creates topics and tables, builds the services (infra/build.ts,
 * into a folder of its own) and starts each (gateway, ingest, aggregator, quota worker, billing worker,
 * admin API) as a `node` child process (logs in .data/logs/), then runs a smoke test through it:
 *
 *   demo API key (admin API) -> 5 requests through the gateway -> emitter -> Kafka
 *   3 events through the HTTP ingest API ---------------------------------> Kafka
 *   -> aggregator -> ClickHouse rollups, read back and printed.
 *
 * With --once it stops the services after the smoke test (the pipeline test uses that);
 * otherwise they run until Ctrl-C.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, openSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import {
  AppError,
  createLogger,
  env,
  listen,
  parseConfig,
  runService,
  storesConfigSchema,
} from "@keymeter/shared/runtime";
import {
  clickHouseConnection,
  createClickHouse,
  createKafka,
  ensureTopics,
  runMigrations,
  topicNames,
} from "@keymeter/shared/stores";
import { z } from "zod";
import { buildServices, privateBuildDir } from "../build";
import { smokeRoutesQuery } from "./smoke-query";

const ROOT = join(import.meta.dirname, "../..");

const pipelineConfigSchema = storesConfigSchema.extend({
  KAFKA_TOPIC_PREFIX: z.string().default(""),
  KEYMETER_DATA_DIR: z.string().default(join(ROOT, ".data")),
  GATEWAY_PORT: env.port().default(8080),
  ADMIN_PORT: env.port().default(8081),
  INGEST_PORT: env.port().default(8088),
  DEMO_UPSTREAM_PORT: env.port().default(8090),
  AGGREGATOR_METRICS_PORT: env.port().default(9464),
  QUOTA_WORKER_METRICS_PORT: env.port().default(9465),
  BILLING_WORKER_METRICS_PORT: env.port().default(9466),
});

const once = process.argv.includes("--once");

runService("pipeline", async () => {
  const config = parseConfig(pipelineConfigSchema);
  const logger = createLogger("pipeline", config.LOG_LEVEL);
  const connection = clickHouseConnection(config);
  const migrations = await runMigrations(connection, { dir: MIGRATIONS_DIR, logger });
  say(
    `clickhouse: database ${config.CLICKHOUSE_DATABASE}, ${migrations.applied.length} migrations applied, ${migrations.alreadyApplied.length} already there`,
  );
  const kafka = createKafka(config.KAFKA_BROKERS, "keymeter-pipeline", logger);
  const topics = topicNames(config.KAFKA_TOPIC_PREFIX);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topics, { partitions: 6 });
  await admin.disconnect();
  say(`kafka: topics ${topics.events} and ${topics.deadLetter} ready`);

  // A stand-in for the customer's API behind the gateway.
  const upstream = createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ ok: true, path: req.url }));
  });
  await listen(upstream, "127.0.0.1", config.DEMO_UPSTREAM_PORT, "DEMO_UPSTREAM_PORT");

  const bundles = privateBuildDir("pipeline");
  await buildServices(bundles);
  say(`build: services bundled into ${bundles}`);
  const logs = join(config.KEYMETER_DATA_DIR, "logs");
  mkdirSync(logs, { recursive: true });
  const adminToken = randomBytes(24).toString("hex");
  const ingestToken = randomBytes(24).toString("hex");
  const common = {
    KAFKA_BROKERS: config.KAFKA_BROKERS.join(","),
    CLICKHOUSE_URL: config.CLICKHOUSE_URL,
    CLICKHOUSE_DATABASE: config.CLICKHOUSE_DATABASE,
    REDIS_URL: config.REDIS_URL,
    KAFKA_TOPIC_PREFIX: config.KAFKA_TOPIC_PREFIX,
    LOG_LEVEL: config.LOG_LEVEL,
  };
  const children = [
    start("aggregator", bundles, logs, { ...common, METRICS_PORT: String(config.AGGREGATOR_METRICS_PORT) }),
    start("quota-worker", bundles, logs, { ...common, METRICS_PORT: String(config.QUOTA_WORKER_METRICS_PORT) }),
    start("ingest", bundles, logs, { ...common, INGEST_PORT: String(config.INGEST_PORT), INGEST_TOKENS: ingestToken }),
    start("admin-api", bundles, logs, {
      ...common,
      ADMIN_PORT: String(config.ADMIN_PORT),
      ADMIN_BOOTSTRAP_TOKEN: adminToken,
    }),
    start("gateway", bundles, logs, {
      ...common,
      GATEWAY_PORT: String(config.GATEWAY_PORT),
      GATEWAY_ID: "pipeline-gateway",
      UPSTREAM_URL: `http://127.0.0.1:${config.DEMO_UPSTREAM_PORT}`,
      EMITTER_SPOOL_DIR: join(config.KEYMETER_DATA_DIR, "spool", "gateway"),
    }),
    // Without STRIPE_API_KEY in the environment the billing worker is a dry run (logs what it would send).
    start("billing-worker", bundles, logs, { ...common, METRICS_PORT: String(config.BILLING_WORKER_METRICS_PORT) }),
  ];
  const stop = async () => {
    await Promise.all(children.map(stopChild));
    upstream.close();
    rmSync(bundles, { recursive: true, force: true });
  };

  try {
    const gateway = `http://127.0.0.1:${config.GATEWAY_PORT}`;
    const adminApi = `http://127.0.0.1:${config.ADMIN_PORT}`;
    const ingest = `http://127.0.0.1:${config.INGEST_PORT}`;
    for (const [name, url] of [
      ["aggregator", `http://127.0.0.1:${config.AGGREGATOR_METRICS_PORT}/healthz`],
      ["quota-worker", `http://127.0.0.1:${config.QUOTA_WORKER_METRICS_PORT}/healthz`],
      ["ingest", `${ingest}/healthz`],
      ["admin-api", `${adminApi}/healthz`],
      ["gateway", `${gateway}/healthz`],
      ["billing-worker", `http://127.0.0.1:${config.BILLING_WORKER_METRICS_PORT}/healthz`],
    ] as const) {
      await waitHealthy(name, url, children);
    }
    say(
      `services: aggregator, quota-worker :${config.QUOTA_WORKER_METRICS_PORT}, billing-worker :${config.BILLING_WORKER_METRICS_PORT}, ingest :${config.INGEST_PORT}, admin-api :${config.ADMIN_PORT}, gateway :${config.GATEWAY_PORT} -> demo upstream :${config.DEMO_UPSTREAM_PORT} (logs in ${logs})`,
    );

    // The smoke test, as a user would run it.
    const customer = `cus_smoke_${Date.now().toString(36)}`;
    const created = await fetch(`${adminApi}/v1/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ customer_id: customer, tier: "free", name: "pipeline smoke", scope: "read-write" }),
    });
    if (created.status !== 201 && created.status !== 200)
      throw new AppError("internal", `admin API answered ${created.status}: ${await created.text()}`);
    const { key, secret } = (await created.json()) as { key: { id: string }; secret: string };
    say(`admin-api: created key ${key.id} for ${customer} (tier free)`);

    for (let i = 0; i < 5; i++) {
      const response = await fetch(`${gateway}/v1/things/${i}`, { headers: { authorization: `Bearer ${secret}` } });
      if (response.status !== 200)
        throw new AppError("internal", `gateway answered ${response.status}: ${await response.text()}`);
    }
    const refused = await fetch(`${gateway}/v1/things/1`, { headers: { authorization: "Bearer km_live_wrong" } });
    say(`gateway: 5 requests with the key answered 200; a wrong key got ${refused.status}`);

    const events = Array.from({ length: 3 }, (_, i) => ({
      specversion: "1.0",
      id: `smoke-${customer}-${i}`,
      source: "pipeline-smoke",
      type: "api.request",
      subject: key.id,
      time: new Date().toISOString(),
      data: { method: "POST", route: "/v1/batch", status: 202, latency_ms: 4, customer_id: customer, tier: "free" },
    }));
    const posted = await fetch(`${ingest}/v1/events`, {
      method: "POST",
      headers: { authorization: `Bearer ${ingestToken}`, "content-type": "application/cloudevents-batch+json" },
      body: JSON.stringify(events),
    });
    say(`ingest: 3 events posted, answer ${posted.status} ${await posted.text()}`);

    const clickhouse = createClickHouse(connection);
    const deadline = Date.now() + 60_000;
    let rows: Array<{ route: string; requests: string }> = [];
    while (Date.now() < deadline) {
      const result = await clickhouse.query({
        query: smokeRoutesQuery(key.id),
        format: "JSONEachRow",
      });
      rows = await result.json();
      if (rows.reduce((sum, row) => sum + Number(row.requests), 0) >= 8) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await clickhouse.close();
    const total = rows.reduce((sum, row) => sum + Number(row.requests), 0);
    for (const row of rows) say(`clickhouse: usage_daily ${key.id} ${row.route}: ${row.requests} requests`);
    if (total !== 8)
      throw new AppError("internal", `smoke: expected 8 requests in ClickHouse for ${key.id}, found ${total}`);
    say("smoke: ok (8 events from gateway and ingest API counted once each in ClickHouse)");
  } catch (error) {
    await stop();
    throw error;
  }

  if (once) {
    await stop();
    return undefined;
  }
  say("pipeline running; Ctrl-C stops the services (npm run down stops Kafka, ClickHouse and Redis)");
  return stop;
});

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function start(name: string, bundles: string, logs: string, environment: Record<string, string>): ChildProcess {
  const out = openSync(join(logs, `${name}.log`), "a");
  const child = spawn(process.execPath, ["--enable-source-maps", join(bundles, `${name}.mjs`)], {
    env: { ...process.env, ...environment },
    stdio: ["ignore", out, out],
  });
  child.once("exit", (code, signal) => {
    if (code !== 0 && signal !== "SIGTERM")
      say(`${name} exited (${signal ?? `code ${code}`}); see ${join(logs, `${name}.log`)}`);
  });
  return child;
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

async function waitHealthy(name: string, url: string, children: ChildProcess[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (children.some((c) => c.exitCode !== null)) break;
    try {
      // Any HTTP answer means it is listening (the gateway answers 401 to a request without a key).
      await fetch(url);
      return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new AppError("service_unavailable", `${name} did not become healthy (${url}); see .data/logs/${name}.log`);
}
