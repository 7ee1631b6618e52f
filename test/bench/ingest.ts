/**
 * `npm run bench:ingest`: end-to-end ingest on this machine, with every part running here
 * (Kafka, ClickHouse, Redis, the aggregator as its own process, the emitter in this one).
 * Loopback only; every phase is bounded in events and time. Prints `name: value` lines.
 *
 *   ingest_events_per_s           emitter -> Kafka -> aggregator -> ClickHouse, sustained; ends on the
 *                                 exact count (the bench fails if any event is missing or doubled)
 *   emitter_spooled / _dropped    events the emitter put on disk or lost (the bench fails on a drop)
 *   freshness_p50_ms / _p99_ms    per event: emit -> its row visible in ClickHouse, at half that rate
 *                                 (a sample of events, each looked up by id)
 *   aggregator_cpu_us_per_event   CPU the aggregator process spent per event
 *   aggregator_peak_rss_mib       its peak memory
 *   aggregator_backlog_events_per_s        the aggregator alone draining the same backlog
 *   backlog_cpu_us_per_event               CPU per event of aggregator + ClickHouse + Kafka broker meanwhile
 *   backlog_clickhouse_/_kafka_cpu_us_per_event  of that, ClickHouse's and the broker's
 *   peer_cpu_us_per_event                  ClickHouse + Kafka broker per event while the peer drains it
 *                                          (peer_clickhouse_/_kafka_cpu_us_per_event: each)
 *   peer_kafka_engine_events_per_s         ClickHouse's own Kafka engine draining that backlog
 *   peer_naive_insert_per_event_events_per_s  one INSERT per event: the floor
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { createLogger } from "@keymeter/shared/runtime";
import {
  type ClickHouseClient,
  type ClickHouseConnection,
  createClickHouse,
  createKafka,
  createRedis,
  ensureTopics,
  quoteString,
  runMigrations,
  toDateTime,
  topicNames,
} from "@keymeter/shared/stores";
import { KafkaEmitter, type UsageEventInput } from "@keymeter/shared/usage";
import { buildServices, privateBuildDir } from "../../infra/build";
import { cpuSeconds, peakRssMiB, percentile } from "./proc-stats";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 600_000);
const PARTITIONS = Number(process.env.BENCH_PARTITIONS ?? 4);
const PHASE_LIMIT_MS = 120_000;
const FRESHNESS_SECONDS = 10;

const brokers = (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(",");
const clickhouseUrl = process.env.CLICKHOUSE_URL ?? "http://127.0.0.1:8123";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const logger = createLogger("bench", "warn");
const run = `bench_${Date.now().toString(36)}`;
const print = (name: string, value: number | string) =>
  console.log(`${name}: ${typeof value === "number" ? Number(value.toFixed(value < 10 ? 3 : 1)) : value}`);

/** CPU seconds used so far by the ClickHouse server and the Kafka broker that services.sh started. */
function storesCpuSeconds(): { clickhouse: number; kafka: number } {
  const data = process.env.KEYMETER_DATA_DIR ?? join(import.meta.dirname, "../../.data");
  const of = (service: string) => cpuSeconds(Number(readFileSync(join(data, service, "pid"), "utf8")));
  return { clickhouse: of("clickhouse"), kafka: of("kafka") };
}

/** CPU per event of ClickHouse and the broker since `before`, printed as `<prefix>_clickhouse/_kafka_cpu_us_per_event`; returns their sum in seconds. */
function printStoresCpu(prefix: string, before: { clickhouse: number; kafka: number }, events: number): number {
  const now = storesCpuSeconds();
  const clickhouse = now.clickhouse - before.clickhouse;
  const kafka = now.kafka - before.kafka;
  print(`${prefix}_clickhouse_cpu_us_per_event`, (clickhouse / events) * 1e6);
  print(`${prefix}_kafka_cpu_us_per_event`, (kafka / events) * 1e6);
  return clickhouse + kafka;
}

function connection(database: string): ClickHouseConnection {
  return { url: clickhouseUrl, username: "default", password: "", database };
}

async function scalar(client: ClickHouseClient, sql: string): Promise<number> {
  const result = await client.query({ query: sql, format: "JSONEachRow" });
  const [row] = await result.json<{ n: string | number | null }>();
  return Number(row?.n ?? 0);
}

async function waitUntil(
  what: string,
  check: () => Promise<boolean>,
  limitMs = PHASE_LIMIT_MS,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`bench: ${what} not reached within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The aggregator as it is deployed: built (infra/build.ts) and run by plain node. */
const bundles = privateBuildDir("bench-ingest");

function spawnAggregator(database: string, groupId: string, topicPrefix: string): ChildProcess {
  return spawn(
    process.execPath,
    // BENCH_AGGREGATOR_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the aggregator.
    [...(process.env.BENCH_AGGREGATOR_NODE_ARGS?.split(" ").filter(Boolean) ?? []), join(bundles, "aggregator.mjs")],
    {
      env: {
        ...process.env,
        KAFKA_BROKERS: brokers.join(","),
        CLICKHOUSE_URL: clickhouseUrl,
        CLICKHOUSE_DATABASE: database,
        REDIS_URL: redisUrl,
        KAFKA_TOPIC_PREFIX: topicPrefix,
        AGGREGATOR_GROUP_ID: groupId,
        DEDUP_KEY_PREFIX: `${run}:${groupId}:dedup:`,
        METRICS_PORT: "0",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
}

let sequence = 0;
function event(id = `${run}-${sequence + 1}`): UsageEventInput {
  sequence++;
  return {
    specversion: "1.0",
    id,
    source: "bench-gateway",
    type: "api.request",
    subject: `key_bench${String(sequence % 5000).padStart(6, "0")}`,
    time: new Date().toISOString(),
    data: {
      method: sequence % 5 === 0 ? "POST" : "GET",
      route: `/v1/resource${sequence % 20}/:id`,
      status: sequence % 50 === 0 ? 429 : 200,
      latency_ms: sequence % 100,
      request_bytes: 200,
      response_bytes: 1500,
      units: 1,
      customer_id: `cus_${sequence % 500}`,
      tier: "pro",
    },
  };
}

/** Emits `count` events as fast as the emitter takes them, never overfilling its buffer. */
async function emitAll(emitter: KafkaEmitter, count: number, onEmit?: (i: number) => void): Promise<void> {
  for (let i = 0; i < count; i++) {
    emitter.emit(event());
    onEmit?.(i);
    if (i % 2_000 === 1_999) {
      while (emitter.stats.buffered > 20_000) await new Promise((r) => setTimeout(r, 1));
      await new Promise((r) => setImmediate(r));
    }
  }
  await emitter.flush();
}

async function main(): Promise<void> {
  await buildServices(bundles);
  const kafka = createKafka(brokers, run, logger);
  const admin = kafka.admin();
  await admin.connect();
  const topics = topicNames(`${run}.`);
  await ensureTopics(admin, topics, { partitions: PARTITIONS });
  const databases = [`${run}_e2e`, `${run}_backlog`, `${run}_peer`];
  for (const db of databases) await runMigrations(connection(db), { dir: MIGRATIONS_DIR });
  const e2e = createClickHouse(connection(databases[0] ?? ""));
  const emitter = new KafkaEmitter({
    kafka,
    topic: topics.events,
    logger,
    spoolDir: mkdtempSync(join(tmpdir(), "bench-spool-")),
  });
  await emitter.start();
  const children: ChildProcess[] = [];
  try {
    print("bench_events", EVENTS);
    print("bench_partitions", PARTITIONS);

    // 1. Sustained end to end: emit EVENTS while the aggregator stores them.
    const aggregator = spawnAggregator(databases[0] ?? "", `${run}-e2e`, `${run}.`);
    children.push(aggregator);
    await waitUntil(
      "aggregator joined",
      async () => (await admin.describeGroups([`${run}-e2e`])).groups[0]?.state === "Stable",
      30_000,
      100,
    );
    const pid = aggregator.pid ?? 0;
    const cpuBefore = cpuSeconds(pid);
    const started = Date.now();
    await emitAll(emitter, EVENTS);
    const emitSeconds = (Date.now() - started) / 1000;
    await waitUntil(
      "e2e rollups complete",
      async () => (await scalar(e2e, "SELECT sum(requests) AS n FROM usage_hourly")) >= EVENTS,
    );
    const e2eSeconds = (Date.now() - started) / 1000;
    const cpuUsed = cpuSeconds(pid) - cpuBefore;
    // A faster figure from double counting would be worthless: the run must be exact.
    const stored = await scalar(e2e, "SELECT count() AS n FROM usage_events");
    const distinct = await scalar(e2e, "SELECT uniqExact(source, event_id) AS n FROM usage_events");
    const rolledUp = await scalar(e2e, "SELECT sum(requests) AS n FROM usage_hourly");
    if (stored !== EVENTS || distinct !== EVENTS || rolledUp !== EVENTS) {
      throw new Error(
        `bench: not exact: ${EVENTS} sent, ${stored} rows, ${distinct} distinct ids, ${rolledUp} in rollups`,
      );
    }
    const { spooled, dropped } = emitter.stats;
    print("emitter_spooled", spooled);
    print("emitter_dropped", dropped);
    if (dropped > 0) throw new Error(`bench: the emitter dropped ${dropped} events`);
    print("emitter_events_per_s", EVENTS / emitSeconds);
    print("ingest_events_per_s", EVENTS / e2eSeconds);
    print("aggregator_cpu_us_per_event", (cpuUsed / EVENTS) * 1e6);
    print("aggregator_peak_rss_mib", peakRssMiB(pid));

    // 2. Freshness at half the sustained rate, per event: a sample of events carry known ids;
    // each is looked up until its row is visible, and its own emit time is subtracted.
    const rate = EVENTS / e2eSeconds / 2;
    const freshnessEvents = Math.floor(rate * FRESHNESS_SECONDS);
    const sampleEvery = Math.max(1, Math.floor(freshnessEvents / 2_000));
    const waiting = new Map<string, number>(); // sampled id -> emit time, until its row is seen
    const delays: number[] = [];
    let polling = true;
    const poller = (async () => {
      const deadline = Date.now() + FRESHNESS_SECONDS * 1000 + PHASE_LIMIT_MS;
      while ((polling || waiting.size > 0) && Date.now() < deadline) {
        const ids = [...waiting.keys()].slice(0, 1_000);
        if (ids.length > 0) {
          const result = await e2e.query({
            query: `SELECT event_id FROM usage_events WHERE event_id IN (${ids.map(quoteString).join(",")})`,
            format: "JSONEachRow",
          });
          const now = performance.now();
          for (const { event_id } of await result.json<{ event_id: string }>()) {
            const at = waiting.get(event_id);
            if (at === undefined) continue;
            delays.push(now - at);
            waiting.delete(event_id);
          }
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      if (waiting.size > 0) throw new Error(`bench: ${waiting.size} sampled events never became visible`);
    })();
    const t0 = performance.now();
    for (let i = 0; i < freshnessEvents; i++) {
      const due = t0 + (i / rate) * 1000;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      if (i % sampleEvery === 0) {
        const id = `${run}-fresh-${i}`;
        waiting.set(id, performance.now());
        emitter.emit(event(id));
      } else {
        emitter.emit(event());
      }
    }
    await emitter.flush();
    polling = false;
    await poller;
    delays.sort((x, y) => x - y);
    print("freshness_sampled_events", delays.length);
    print("freshness_rate_events_per_s", rate);
    print("freshness_p50_ms", percentile(delays, 50));
    print("freshness_p99_ms", percentile(delays, 99));
    aggregator.kill("SIGTERM");

    // 3. The same backlog (EVENTS + freshness events), drained by our aggregator and by the peer.
    const backlog = EVENTS + freshnessEvents;
    const backlogDb = createClickHouse(connection(databases[1] ?? ""));
    const ours = spawnAggregator(databases[1] ?? "", `${run}-backlog`, `${run}.`);
    children.push(ours);
    const oursStarted = Date.now();
    const storesBefore = storesCpuSeconds();
    const oursCpuBefore = cpuSeconds(ours.pid ?? 0);
    await waitUntil(
      "backlog drained by the aggregator",
      async () => (await scalar(backlogDb, "SELECT sum(requests) AS n FROM usage_hourly")) >= backlog,
      PHASE_LIMIT_MS,
      100,
    );
    print("aggregator_backlog_events_per_s", backlog / ((Date.now() - oursStarted) / 1000));
    // CPU of everything on the path (aggregator, ClickHouse, Kafka broker) per event, beside the peer's.
    const oursCpu = cpuSeconds(ours.pid ?? 0) - oursCpuBefore;
    const storesUsed = printStoresCpu("backlog", storesBefore, backlog);
    print("backlog_cpu_us_per_event", ((oursCpu + storesUsed) / backlog) * 1e6);
    ours.kill("SIGTERM");
    await backlogDb.close();

    // ClickHouse's Kafka engine, from the beginning of the same topic, into the same tables.
    // What differs (printed beside the figure): 18.16's JSONEachRow cannot read the nested
    // `data`, so the peer parses four top-level strings and its rollups group by period and key
    // only (no customer, tier, route or status class); it validates nothing, drops no
    // duplicates and keeps no offsets. Reading each line as TabSeparated text and extracting
    // fields with visitParamExtract* was tried: 18.16's Kafka engine hung in CREATE and DROP.
    const peerGroup = `${run}-peer`;
    const metadata = await admin.fetchTopicMetadata({ topics: [topics.events] });
    await admin.setOffsets({
      groupId: peerGroup,
      topic: topics.events,
      partitions: (metadata.topics[0]?.partitions ?? []).map((p) => ({ partition: p.partitionId, offset: "0" })),
    });
    // 18.16's Kafka engine may take a while to join its consumer group inside CREATE.
    const peer = createClickHouse(connection(databases[2] ?? ""), { requestTimeoutMs: 180_000 });
    await peer.command({
      query: `CREATE TABLE usage_kafka (id String, source String, subject String, time String)
        ENGINE = Kafka SETTINGS kafka_broker_list = ${quoteString(brokers.join(","))},
        kafka_topic_list = ${quoteString(topics.events)}, kafka_group_name = ${quoteString(peerGroup)},
        kafka_format = 'JSONEachRow', kafka_num_consumers = 1`,
    });
    const peerStarted = Date.now();
    const peerStoresBefore = storesCpuSeconds();
    // On 18.16 a view fed by a Kafka table does not cascade into the views of its target, so
    // the peer's rollups hang off the Kafka table directly: the same four writes as ours.
    const peerViews = [
      `usage_kafka_mv TO usage_events AS
        SELECT id AS event_id, source, subject AS key_id, '' AS customer_id, '' AS tier,
               toDateTime(substring(time, 1, 19), 'UTC') AS event_time, '' AS method, '' AS route,
               toUInt16(0) AS status, toFloat32(0) AS latency_ms, toUInt64(0) AS request_bytes,
               toUInt64(0) AS response_bytes, toUInt64(1) AS units, ${quoteString(topics.events)} AS kafka_topic,
               toUInt32(0) AS kafka_partition, toUInt64(0) AS kafka_offset, now() AS ingested_at
        FROM usage_kafka`,
      ...[
        ["hourly", "hour", "toStartOfHour"],
        ["daily", "day", "toDate"],
        ["monthly", "month", "toStartOfMonth"],
      ].map(
        ([name, column, fn]) => `usage_kafka_${name}_mv TO usage_${name} AS
        SELECT ${fn}(toDateTime(substring(time, 1, 19), 'UTC'), 'UTC') AS ${column}, subject AS key_id,
               '' AS customer_id, '' AS tier, '' AS route, toUInt8(0) AS status_class, count() AS requests,
               toUInt64(count()) AS units, toUInt64(0) AS request_bytes, toUInt64(0) AS response_bytes,
               toFloat64(0) AS latency_ms_sum
        FROM usage_kafka GROUP BY ${column}, key_id`,
      ),
    ];
    for (const view of peerViews) await peer.command({ query: `CREATE MATERIALIZED VIEW ${view}` });
    await waitUntil(
      "backlog drained by the Kafka engine",
      async () => (await scalar(peer, "SELECT sum(requests) AS n FROM usage_hourly")) >= backlog,
      PHASE_LIMIT_MS,
      100,
    );
    print("peer_kafka_engine_events_per_s", backlog / ((Date.now() - peerStarted) / 1000));
    print("peer_cpu_us_per_event", (printStoresCpu("peer", peerStoresBefore, backlog) / backlog) * 1e6);
    print(
      "peer_kafka_engine_differs",
      "parses 4 top-level fields (18.16 cannot read nested data); rollups by period and key only; no validation, dedup or offsets",
    );
    for (const view of peerViews) await peer.command({ query: `DROP TABLE ${view.split(" ")[0]}` });
    await peer.command({ query: "DROP TABLE usage_kafka" });

    // 4. The floor: one INSERT per event, for three seconds.
    const naive = createClickHouse(connection(databases[2] ?? ""));
    let naiveCount = 0;
    const naiveStarted = Date.now();
    while (Date.now() - naiveStarted < 3_000) {
      const e = event();
      await naive.insert({
        table: "usage_events",
        values: [{ event_id: e.id, source: e.source, key_id: e.subject, event_time: toDateTime(Date.now()), units: 1 }],
        format: "JSONEachRow",
      });
      naiveCount++;
    }
    print("peer_naive_insert_per_event_events_per_s", naiveCount / ((Date.now() - naiveStarted) / 1000));
    await naive.close();
    await peer.close();
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    await emitter.close();
    await admin.deleteTopics({ topics: [topics.events, topics.deadLetter] }).catch(() => undefined);
    await admin.disconnect();
    const cleanup = createClickHouse(connection("default"));
    // The Kafka engine's view and table first: 18.16 can hang dropping a database that holds a streaming Kafka table.
    for (const name of ["usage_kafka_mv", "usage_kafka_hourly_mv", "usage_kafka_daily_mv", "usage_kafka_monthly_mv"]) {
      await cleanup.command({ query: `DROP TABLE IF EXISTS ${databases[2]}.${name}` });
    }
    await cleanup.command({ query: `DROP TABLE IF EXISTS ${databases[2]}.usage_kafka` });
    for (const db of databases) await cleanup.command({ query: `DROP DATABASE IF EXISTS ${db}` });
    await cleanup.close();
    await e2e.close();
    rmSync(bundles, { recursive: true, force: true });
    const redis = createRedis(redisUrl);
    const keys = await redis.keys(`${run}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
