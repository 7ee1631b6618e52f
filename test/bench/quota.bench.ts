/**
 * Quota enforcement, on loopback against the real Kafka, ClickHouse and Redis. Prints
 * `name: value` lines:
 *
 *   quota_reaction_p99_ms      time from the request that uses up a key's quota (the 100th
 *                              admitted) to the first 429 quota_exceeded, per key, at a steady
 *                              BENCH_QUOTA_RPS requests/s per key (p50 printed beside)
 *   quota_overshoot_requests   requests admitted over the quota (worst key; mean beside)
 *   quota_stage_*_p50_ms       where the reaction time goes: ingest (request -> stored in ClickHouse),
 *                              check (stored -> flag published), gateway (flag -> first 429)
 *   quota_sweep_100k_keys_s    one full sweep over BENCH_SWEEP_KEYS (100,000) keys that all have
 *                              usage (synthetic rows inserted straight into ClickHouse; 5 % of the
 *                              keys over quota, 10 % in non-UTC zones): the first sweep, which
 *                              sets every flag and raises every counter; the steady-state
 *                              sweep (nothing to change) is printed beside
 *
 * The reaction phase runs the gateway (reference proxy, Kafka emitter with its default
 * 20 ms linger), the aggregator (quota hook) and the quota worker in this one process, with
 * the load generator: everything shares one event loop and the machine's 2 cores with
 * Kafka and ClickHouse. Bounded: BENCH_QUOTA_KEYS keys (30) in waves of 10, each until its
 * first 429 or 20 s.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { Readable } from "node:stream";
import { Aggregator, QuotaHook } from "@keymeter/aggregator";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { createGatewayProxy, Gateway, KeyCache, RateLimiter } from "@keymeter/gateway";
import { QuotaWorker } from "@keymeter/quota-worker";
import { KeyRegistry } from "@keymeter/shared/api-keys";
import {
  CustomerRegistry,
  parseTiers,
  periodOf,
  QuotaOverrides,
  QuotaSubjects,
  UsageCounters,
} from "@keymeter/shared/billing";
import { QuotaCheckQueue, queueConnection } from "@keymeter/shared/jobs";
import { createLogger } from "@keymeter/shared/runtime";
import {
  type ClickHouseClient,
  createClickHouse,
  createKafka,
  createRedis,
  ensureTopics,
  type Redis,
  type RedisKeys,
  redisKeys,
  runMigrations,
  toDateTime,
  topicNames,
} from "@keymeter/shared/stores";
import { KafkaEmitter } from "@keymeter/shared/usage";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const CLICKHOUSE_URL = process.env.CLICKHOUSE_URL ?? "http://127.0.0.1:8123";
const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(",");
const KEYS = Number(process.env.BENCH_QUOTA_KEYS ?? 30);
const RPS = Number(process.env.BENCH_QUOTA_RPS ?? 20);
const SWEEP_KEYS = Number(process.env.BENCH_SWEEP_KEYS ?? 100_000);
const QUOTA = 100;
const TIERS = parseTiers({
  tiers: [
    { name: "metered", rate_limit_rps: 100_000, burst: 100_000, monthly_quota: QUOTA, overage: "block" },
    { name: "big", rate_limit_rps: 100_000, burst: 100_000, monthly_quota: 1_000, overage: "block" },
  ],
});
const logger = createLogger("bench-quota", process.env.BENCH_LOG_LEVEL === "info" ? "info" : "error");
const name = `bench_quota_${Date.now().toString(36)}_${randomBytes(2).toString("hex")}`;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

function print(metric: string, value: number | string, note = ""): void {
  process.stdout.write(`${metric}: ${value}${note ? `   # ${note}` : ""}\n`);
}

async function clearPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, found] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 5000);
    cursor = next;
    if (found.length > 0) await redis.del(...found);
  } while (cursor !== "0");
}

function startWorker(redisConnections: Redis[], clickhouse: ClickHouseClient, keys: RedisKeys, sweepOnStart: boolean) {
  const connection = (forBullMQ = false) => {
    const redis = createRedis(REDIS_URL, { forBullMQ });
    redisConnections.push(redis);
    return redis;
  };
  return new QuotaWorker({
    redis: connection(),
    subscriber: createRedis(REDIS_URL),
    bullConnection: connection(true),
    clickhouse,
    keys,
    tiers: TIERS,
    logger,
    sweepOnStart,
    sweepIntervalMs: 3_600_000,
  });
}

/** Units stored per key, when its quota's worth reached ClickHouse, when its flag was published. */
/** Units stored per key, when its quota's worth reached ClickHouse, when its flag was published. */
const units = new Map<string, number>();
const inserted = new Map<string, number>();
const flagged = new Map<string, number>();
const hookMs: number[] = [];
const stages = { ingest: [] as number[], check: [] as number[], gateway: [] as number[] };
async function reactionPhase(clickhouse: ClickHouseClient): Promise<void> {
  const prefix = `${name}:r:`;
  const keys = redisKeys(prefix);
  const connections: Redis[] = [];
  const redis = createRedis(REDIS_URL);
  connections.push(redis);
  const kafka = createKafka(KAFKA_BROKERS, name, logger);
  const topics = topicNames(`${name}.`);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topics, { partitions: 3 });
  const spool = mkdtempSync(join(tmpdir(), "bench-quota-"));
  const emitter = new KafkaEmitter({ kafka, topic: topics.events, logger, spoolDir: spool });
  await emitter.start();

  const upstream = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end("{}"));
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve));
  const upstreamPort = (upstream.address() as { port: number }).port;
  const cache = new KeyCache({ redis, subscriber: createRedis(REDIS_URL), keys, logger });
  await cache.start();
  const gateway = new Gateway({
    cache,
    limiter: new RateLimiter(redis, keys, { logger }),
    tiers: TIERS,
    sink: emitter,
    logger,
    source: "bench",
  });
  const proxy = createGatewayProxy({ gateway, upstream: new URL(`http://127.0.0.1:${upstreamPort}`), logger });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const gatewayUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;

  const bull = createRedis(REDIS_URL, { forBullMQ: true });
  connections.push(bull);
  const checks = new QuotaCheckQueue(queueConnection(bull, keys));
  const customers = new CustomerRegistry({ redis, keys, logger });
  const hook = new QuotaHook({
    subjects: new QuotaSubjects({ redis, keys, tiers: TIERS, customers, overrides: new QuotaOverrides(redis, keys) }),
    counters: new UsageCounters(redis, keys),
    checks,
  });
  const aggregator = new Aggregator({
    kafka,
    clickhouse,
    redis,
    topics,
    groupId: `${name}-group`,
    logger,
    dedupWindowSeconds: 600,
    dedupKeyPrefix: `${prefix}dedup:`,
    afterInsert: async (batch) => {
      const t0 = performance.now();
      for (const e of batch.events) {
        const n = (units.get(e.subject) ?? 0) + e.data.units;
        units.set(e.subject, n);
        if (n >= QUOTA && !inserted.has(e.subject)) inserted.set(e.subject, t0);
      }
      await hook.afterInsert(batch);
      hookMs.push(performance.now() - t0);
    },
  });
  // When each key's flag was published: splits the reaction into stages.
  const flagSubscriber = createRedis(REDIS_URL);
  connections.push(flagSubscriber);
  await flagSubscriber.subscribe(keys.quotaFlagChannel);
  flagSubscriber.on("message", (_channel: string, keyId: string) => {
    if (!flagged.has(keyId)) flagged.set(keyId, performance.now());
  });
  await aggregator.start();
  const worker = startWorker(connections, clickhouse, keys, false);
  await worker.start();

  const registry = new KeyRegistry({ redis, keys, tiers: TIERS, logger });
  const reactions: number[] = [];
  const overshoots: number[] = [];
  const runKey = async ({ secret, keyId }: { secret: string; keyId: string }) => {
    const sent: Array<{ at: number; status: number; done: number }> = [];
    const interval = 1000 / RPS;
    const started = performance.now();
    const pending: Promise<void>[] = [];
    for (let i = 0; ; i++) {
      const due = started + i * interval;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const record = { at: performance.now(), status: 0, done: 0 };
      sent.push(record);
      pending.push(
        fetch(`${gatewayUrl}/v1/things/${i}`, { headers: { authorization: `Bearer ${secret}` } }).then(
          async (response) => {
            await response.arrayBuffer();
            record.status = response.status;
            record.done = performance.now();
          },
          // A keep-alive connection closed under a request (ECONNRESET): counted as neither.
          () => {
            record.status = -1;
            record.done = performance.now();
          },
        ),
      );
      if (sent.some((r) => r.status === 429) || performance.now() - started > 20_000) break;
    }
    await Promise.all(pending);
    const admitted = sent.filter((r) => r.status === 200);
    const crossing = admitted[QUOTA - 1];
    const refused = sent.filter((r) => r.status === 429).sort((a, b) => a.done - b.done)[0];
    if (!crossing || !refused) throw new Error(`a key was never refused (${admitted.length} admitted)`);
    reactions.push(refused.done - crossing.at);
    const storedAt = inserted.get(keyId);
    const flaggedAt = flagged.get(keyId);
    if (storedAt !== undefined && flaggedAt !== undefined) {
      stages.ingest.push(storedAt - crossing.at);
      stages.check.push(flaggedAt - storedAt);
      stages.gateway.push(refused.done - flaggedAt);
    }
    overshoots.push(admitted.length - QUOTA);
  };
  for (let wave = 0; wave < KEYS; wave += 10) {
    const secrets = [];
    for (let i = wave; i < Math.min(KEYS, wave + 10); i++) {
      const issued = await registry.create({ customer_id: `cus_bench_${i}`, tier: "metered", scope: "read-write" });
      secrets.push({ secret: issued.secret, keyId: issued.key.id });
    }
    await Promise.all(secrets.map(runKey));
  }

  const p50 = (values: number[]) =>
    Math.round(
      percentile(
        [...values].sort((x, y) => x - y),
        50,
      ),
    );
  const p99 = (values: number[]) =>
    Math.round(
      percentile(
        [...values].sort((x, y) => x - y),
        99,
      ),
    );
  print(
    "quota_stage_ingest_p50_ms",
    p50(stages.ingest),
    `request -> stored in ClickHouse (emitter, Kafka, aggregator insert); p99 ${p99(stages.ingest)}`,
  );
  print(
    "quota_stage_check_p50_ms",
    p50(stages.check),
    `stored -> flag published (hook, check job, ClickHouse read); p99 ${p99(stages.check)}`,
  );
  print(
    "quota_stage_gateway_p50_ms",
    p50(stages.gateway),
    `flag published -> first 429 answered; p99 ${p99(stages.gateway)}`,
  );
  print("quota_hook_p99_ms", p99(hookMs), `after-insert hook per batch (counters, checks); p50 ${p50(hookMs)}`);
  const sorted = [...reactions].sort((a, b) => a - b);
  print(
    "quota_reaction_p99_ms",
    Math.round(percentile(sorted, 99)),
    `p50 ${Math.round(percentile(sorted, 50))} ms, ${reactions.length} keys at ${RPS} requests/s each (${Math.min(10, KEYS) * RPS}/s in all)`,
  );
  print(
    "quota_overshoot_requests",
    Math.max(...overshoots),
    `mean ${(overshoots.reduce((a, b) => a + b, 0) / overshoots.length).toFixed(1)}; one second at this rate is ${RPS}`,
  );

  await worker.stop();
  await aggregator.stop();
  await emitter.close();
  await checks.close();
  await new Promise<void>((resolve) => proxy.close(() => resolve()));
  proxy.closeAllConnections();
  upstream.close();
  await admin.deleteTopics({ topics: [topics.events, topics.deadLetter] }).catch(() => undefined);
  await admin.disconnect();
  await clearPrefix(redis, prefix);
  await Promise.all(connections.map((c) => c.quit().catch(() => undefined)));
  rmSync(spool, { recursive: true, force: true });
}

async function sweepPhase(clickhouse: ClickHouseClient): Promise<void> {
  const prefix = `${name}:s:`;
  const keys = redisKeys(prefix);
  const connections: Redis[] = [];
  const redis = createRedis(REDIS_URL);
  connections.push(redis);
  const customers = new CustomerRegistry({ redis, keys, logger });
  const zones = ["UTC", "Asia/Kolkata", "America/New_York"];
  for (const zone of zones) await customers.create({ id: `cus_${zone.replace("/", "_")}`, time_zone: zone });

  // Key records written in bulk (the registry's script per key would take minutes), usage straight into ClickHouse.
  const now = Date.now();
  const at = new Date(now).toISOString();
  const ids: string[] = [];
  const rows: string[] = [];
  let pipeline = redis.pipeline();
  for (let i = 0; i < SWEEP_KEYS; i++) {
    const id = `key_bench${String(i).padStart(10, "0")}`;
    const zone = i % 20 === 0 ? "Asia/Kolkata" : i % 20 === 1 ? "America/New_York" : "UTC";
    const customerId = `cus_${zone.replace("/", "_")}`;
    ids.push(id);
    const record = {
      id,
      customer_id: customerId,
      tier: "big",
      name: "",
      env: "live",
      scope: "read-only",
      routes: [],
      ip_allowlist: [],
      state: "active",
      expires_at: null,
      created_at: at,
      updated_at: at,
      rotated_at: null,
      revoked_at: null,
      hint: "xxxx",
      version: 1,
      secret_hashes: [{ hash: randomBytes(32).toString("hex"), valid_until: null }],
    };
    pipeline.set(keys.keyRecord(id), JSON.stringify(record)).zadd(keys.keyIds, now + i, id);
    const period = periodOf(now, zone);
    // 5 % over the quota of 1,000, the rest under it; two rows each (this period and the previous one).
    const units = i % 20 === 2 ? 1_500 : 1 + (i % 900);
    const time = toDateTime(Math.max(period.start, now - 3_600_000));
    rows.push(
      `{"event_id":"b${i}","source":"bench","key_id":"${id}","customer_id":"${customerId}","tier":"big","event_time":"${time}","method":"GET","route":"/v1/x","status":200,"latency_ms":1,"request_bytes":0,"response_bytes":0,"units":${units},"kafka_topic":"bench","kafka_partition":0,"kafka_offset":0,"ingested_at":"${time}"}`,
      `{"event_id":"p${i}","source":"bench","key_id":"${id}","customer_id":"${customerId}","tier":"big","event_time":"${toDateTime(period.start - 1000)}","method":"GET","route":"/v1/x","status":200,"latency_ms":1,"request_bytes":0,"response_bytes":0,"units":5000,"kafka_topic":"bench","kafka_partition":0,"kafka_offset":0,"ingested_at":"${time}"}`,
    );
    if (i % 5000 === 4999) {
      await pipeline.exec();
      pipeline = redis.pipeline();
    }
  }
  await pipeline.exec();
  for (let start = 0; start < rows.length; start += 100_000) {
    await clickhouse.exec({
      query: "INSERT INTO usage_events FORMAT JSONEachRow",
      values: Readable.from([`${rows.slice(start, start + 100_000).join("\n")}\n`]),
    });
  }

  const worker = startWorker(connections, clickhouse, keys, false);
  const first = await worker.enforcer.sweep();
  const second = await worker.enforcer.sweep();
  if (first.keys !== SWEEP_KEYS || first.flagged !== SWEEP_KEYS / 20) {
    throw new Error(
      `sweep saw ${first.keys} keys and flagged ${first.flagged} (expected ${SWEEP_KEYS}, ${SWEEP_KEYS / 20})`,
    );
  }
  print(
    `quota_sweep_${Math.round(SWEEP_KEYS / 1000)}k_keys_s`,
    first.seconds.toFixed(2),
    `first sweep: ${first.set} flags set, ${first.countersRaised} counters raised; steady state ${second.seconds.toFixed(2)} s`,
  );
  await worker.stop();
  await clearPrefix(redis, prefix);
  await Promise.all(connections.map((c) => c.quit().catch(() => undefined)));
}

async function main(): Promise<void> {
  const connection = { url: CLICKHOUSE_URL, username: "default", password: "", database: name };
  await runMigrations(connection, { dir: MIGRATIONS_DIR });
  const clickhouse = createClickHouse(connection, { requestTimeoutMs: 120_000 });
  try {
    if (process.env.BENCH_PHASES !== "sweep") await reactionPhase(clickhouse);
    if (process.env.BENCH_PHASES !== "reaction") await sweepPhase(clickhouse);
  } finally {
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${name}` });
    await clickhouse.close();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench:quota: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
