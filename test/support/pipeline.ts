import { Aggregator, type AggregatorOptions } from "@keymeter/aggregator";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { createLogger, type Logger } from "@keymeter/shared/runtime";
import {
  type ClickHouseClient,
  type ClickHouseConnection,
  createClickHouse,
  createKafka,
  createRedis,
  ensureTopics,
  type Redis,
  runMigrations,
  type Topics,
  topicNames,
} from "@keymeter/shared/stores";
import type { UsageEventInput } from "@keymeter/shared/usage";
import type { Admin, Kafka } from "kafkajs";
import { TEST_KEYS } from "./partition-keys";
import { services, uniqueName } from "./services";

/** Everything an ingest test needs, isolated: its own topics, database and Redis prefix. */
export interface TestPipeline {
  name: string;
  kafka: Kafka;
  kafkaBrokers: string[];
  redisUrl: string;
  /** A connected admin client (closed by close()). */
  admin: Admin;
  topics: Topics;
  connection: ClickHouseConnection;
  clickhouse: ClickHouseClient;
  redis: Redis;
  logger: Logger;
  dedupKeyPrefix: string;
  /** Sum of `requests` in the monthly rollup (what a bill is computed from). */
  countedRequests(): Promise<number>;
  rawRows(): Promise<number>;
  close(): Promise<void>;
}

export async function createTestPipeline(
  label: string,
  options: { partitions?: number; kafkaBrokers?: string[]; clickhouseUrl?: string } = {},
): Promise<TestPipeline> {
  const name = uniqueName(label);
  const logger = createLogger("test", "silent");
  const addresses = {
    ...services(),
    ...(options.kafkaBrokers ? { kafkaBrokers: options.kafkaBrokers } : {}),
    ...(options.clickhouseUrl ? { clickhouseUrl: options.clickhouseUrl } : {}),
  };
  const connection: ClickHouseConnection = {
    url: addresses.clickhouseUrl,
    username: "default",
    password: "",
    database: name,
  };
  await runMigrations(connection, { dir: MIGRATIONS_DIR });
  const clickhouse = createClickHouse(connection);
  const redis = createRedis(addresses.redisUrl);
  const kafka = createKafka(addresses.kafkaBrokers, name, logger);
  const topics = topicNames(`${name}.`);
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, topics, { partitions: options.partitions ?? 3 });

  const scalar = async (sql: string) => {
    const result = await clickhouse.query({ query: sql, format: "JSONEachRow" });
    const [row] = await result.json<{ n: string | null }>();
    return Number(row?.n ?? 0);
  };
  const dedupKeyPrefix = `${name}:dedup:`;
  return {
    name,
    kafka,
    kafkaBrokers: addresses.kafkaBrokers,
    redisUrl: addresses.redisUrl,
    admin,
    topics,
    connection,
    clickhouse,
    redis,
    logger,
    dedupKeyPrefix,
    countedRequests: () => scalar("SELECT sum(requests) AS n FROM usage_monthly"),
    rawRows: () => scalar("SELECT count() AS n FROM usage_events"),
    async close() {
      await admin.deleteTopics({ topics: [topics.events, topics.deadLetter] }).catch(() => undefined);
      await admin.disconnect();
      await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${name}` });
      await clickhouse.close();
      const keys = await redis.keys(`${dedupKeyPrefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    },
  };
}

/** An aggregator on the pipeline's topics, database and dedup prefix, started; `stop()` it when done. */
export async function startTestAggregator(
  pipeline: TestPipeline,
  options: Partial<AggregatorOptions> = {},
): Promise<Aggregator> {
  const aggregator = new Aggregator({
    kafka: pipeline.kafka,
    clickhouse: pipeline.clickhouse,
    redis: pipeline.redis,
    topics: pipeline.topics,
    groupId: `${pipeline.name}-group`,
    logger: pipeline.logger,
    dedupWindowSeconds: 600,
    dedupKeyPrefix: pipeline.dedupKeyPrefix,
    ...options,
  });
  await aggregator.start();
  return aggregator;
}

let sequence = 0;

/**
 * A valid usage event; `overrides` may replace any field. Keys cycle through TEST_KEYS (one
 * per partition, so a stream reaches every partition) and units vary (1-3), so per-key unit
 * sums catch a lost event hidden by a duplicate.
 */
export function usageEvent(
  overrides: Partial<UsageEventInput> = {},
  data: Partial<UsageEventInput["data"]> = {},
): UsageEventInput {
  sequence++;
  return {
    specversion: "1.0",
    id: `evt-${process.pid}-${Date.now().toString(36)}-${sequence}`,
    source: "test-gateway",
    type: "api.request",
    subject: TEST_KEYS[sequence % TEST_KEYS.length] ?? "key_spread000000",
    time: new Date().toISOString(),
    data: { method: "GET", route: "/v1/things/:id", status: 200, latency_ms: 3, units: 1 + (sequence % 3), ...data },
    ...overrides,
  };
}
