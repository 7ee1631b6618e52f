/**
 * Stripe sync throughput: one sync run of the `pro` tier for BENCH_CUSTOMERS (default 10,000)
 * customers with usage, against the recording Stripe fake set to Stripe's live meter event
 * limit (1,000/s, one call per customer and meter at a time) in its own process, on loopback,
 * with the real ClickHouse (usage rows inserted straight into usage_events) and Redis. The
 * worker side is the real sync (`TierSync` inside `BillingWorker`: ClickHouse read, recorded
 * progress, StripeBillingProvider with its client-side limiter at 1,000/s and 429 back-off).
 * Prints `name: value` lines:
 *
 *   stripe_sync_customers_per_s   customers synced per second, whole run (ClickHouse read included)
 *   stripe_rate_limit_per_s       the limit the fake enforces (Stripe's live limit)
 *   stripe_429_seen               429s the fake answered (rate limit or per-customer lock)
 *   stripe_429_unhandled          meter events the run could not deliver (0 = every 429 was retried)
 *   stripe_noop_run_s             a second run with nothing changed (every total already recorded)
 *   overdriven_*                  1,500 customers against a fake at 250/s with the client limiter at 500/s
 *                                 (two workers on one account): 429s seen and events left undelivered
 *   peer_bare_sdk_unlimited_events_per_s  the bare `stripe` SDK, 64 calls in flight, against a fake with
 *                                 no rate limit: the ceiling of SDK + loopback HTTP + fake on this machine
 *
 * Bounded: BENCH_CUSTOMERS customers, one run each, and a 120 s cap on the run.
 */
import { type ChildProcess, fork } from "node:child_process";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { BillingWorker } from "@keymeter/billing-worker";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { CustomerRegistry, loadTiers } from "@keymeter/shared/billing";
import { createStripeClient, MeterEventLimiter, StripeBillingProvider } from "@keymeter/shared/billing/provider";
import { createLogger } from "@keymeter/shared/runtime";
import {
  createClickHouse,
  createRedis,
  type Redis,
  redisKeys,
  runMigrations,
  toDateTime,
} from "@keymeter/shared/stores";
import { StripeFake } from "../support/stripe-fake";

const CUSTOMERS = Number(process.env.BENCH_CUSTOMERS ?? 10_000);
const LIMIT = Number(process.env.BENCH_STRIPE_LIMIT ?? 1000);
const RUN_CAP_MS = 120_000;
const CLICKHOUSE_URL = process.env.CLICKHOUSE_URL ?? "http://127.0.0.1:8123";
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

type FakeStats = { meterEvents: number; seen429: number; rateLimited: number; locked: number };

async function runFake(limit: number): Promise<void> {
  const fake = await StripeFake.start({ meterEventsPerSecond: limit });
  process.on("message", (message: string) => {
    if (message === "stats") {
      process.send?.({
        stats: {
          meterEvents: fake.meterEvents.length,
          seen429: fake.count(429),
          rateLimited: fake.count(429, "rate_limit"),
          locked: fake.count(429, "lock_timeout"),
        } satisfies FakeStats,
      });
    }
    if (message === "stop") fake.close().then(() => process.exit(0));
  });
  process.send?.({ port: fake.port, apiKey: fake.apiKey });
}

function ask<T>(child: ChildProcess, message: string, key: string): Promise<T> {
  return new Promise((resolve) => {
    const onMessage = (reply: Record<string, unknown>) => {
      if (key in reply) {
        child.off("message", onMessage);
        resolve(reply[key] as T);
      }
    };
    child.on("message", onMessage);
    child.send(message);
  });
}

async function main(): Promise<void> {
  const logger = createLogger("bench", "silent");
  const name = `bench_stripe_${Date.now().toString(36)}`;
  const connection = { url: CLICKHOUSE_URL, username: "default", password: "", database: name };
  const startFake = async (limit: number) => {
    const fakeProcess = fork(fileURLToPath(import.meta.url), ["fake", String(limit)], { execArgv: process.execArgv });
    const address = await new Promise<{ port: number; apiKey: string }>((resolve) =>
      fakeProcess.once("message", (message) => resolve(message as { port: number; apiKey: string })),
    );
    return { child: fakeProcess, ...address };
  };
  const { child, port, apiKey } = await startFake(LIMIT);
  await runMigrations(connection, { dir: MIGRATIONS_DIR });
  const clickhouse = createClickHouse(connection, { requestTimeoutMs: 120_000 });
  const connections: Redis[] = [];
  const redisConnection = (forBullMQ = false) => {
    const redis = createRedis(REDIS_URL, { forBullMQ });
    connections.push(redis);
    return redis;
  };
  const redis = redisConnection();
  const keys = redisKeys(`${name}:`);
  const tiers = loadTiers();
  const stripe = createStripeClient(apiKey, `http://127.0.0.1:${port}`);
  const provider = new StripeBillingProvider({
    stripe,
    limiter: new MeterEventLimiter({ eventsPerSecond: LIMIT }),
    concurrency: Number(process.env.BENCH_STRIPE_CONCURRENCY ?? 64),
    logger,
  });
  try {
    // Seed: Stripe customers (over HTTP, 50 at a time), customer records, one usage row each.
    const started = performance.now();
    const ids = Array.from({ length: CUSTOMERS }, (_, i) => `cus_bench_${String(i).padStart(6, "0")}`);
    const stripeIds = new Array<string>(CUSTOMERS);
    for (let start = 0; start < CUSTOMERS; start += 50) {
      await Promise.all(
        ids.slice(start, start + 50).map(async (id, offset) => {
          stripeIds[start + offset] = (await stripe.customers.create({ metadata: { keymeter_customer_id: id } })).id;
        }),
      );
    }
    const customers = new CustomerRegistry({ redis, keys, logger });
    for (let start = 0; start < CUSTOMERS; start += 200) {
      await Promise.all(
        ids.slice(start, start + 200).map((id, offset) =>
          customers.create({
            id,
            stripe_customer_id: stripeIds[start + offset] ?? null,
            // Meter events need only the customer; the subscription is not read by the sync.
            stripe_subscription_id: "sub_bench",
          }),
        ),
      );
    }
    const insertUsage = async (customerIds: readonly string[], label: string, units: (i: number) => number) => {
      const now = Date.now();
      await clickhouse.insert({
        table: "usage_events",
        format: "JSONEachRow",
        values: customerIds.map((id, i) => ({
          event_id: `bench_${label}_${i}`,
          source: "bench",
          key_id: `key_bench${String(i).padStart(8, "0")}`,
          customer_id: id,
          tier: "pro",
          event_time: toDateTime(now - 60_000),
          status: 200,
          units: units(i),
          kafka_topic: "bench",
          kafka_partition: 0,
          kafka_offset: i,
          ingested_at: toDateTime(now),
        })),
      });
    };
    await insertUsage(ids, "seed", (i) => 1 + (i % 97));
    process.stderr.write(`seeded ${CUSTOMERS} customers in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);

    const worker = new BillingWorker({
      redis: redisConnection(),
      bullConnection: redisConnection(true),
      clickhouse,
      keys,
      tiers,
      provider,
      live: true,
      logger,
      batchSize: Number(process.env.BENCH_BATCH ?? 500),
    });
    const timed = async () => {
      const t0 = performance.now();
      const run = worker.sync.run("pro", "bench");
      const cap = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error("run cap reached")), RUN_CAP_MS).unref(),
      );
      const result = await Promise.race([run, cap]).catch((error: unknown) => {
        // A run that could not deliver everything throws after recording what it did.
        process.stderr.write(`run: ${error instanceof Error ? error.message : String(error)}\n`);
        return undefined;
      });
      return { seconds: (performance.now() - t0) / 1000, result };
    };
    const first = await timed();
    const afterFirst = await ask<FakeStats>(child, "stats", "stats");
    const second = await timed();

    // Overdriven: a client limiter at twice the account's limit (two workers sharing one account
    // without dividing STRIPE_METER_EVENTS_PER_S), against a fake whose bucket is small enough for
    // this machine to exceed (250/s, limiter 500/s): every 429 must be retried, none left undelivered.
    const OVER_LIMIT = 250;
    const overFake = await startFake(OVER_LIMIT);
    const overStripe = createStripeClient(overFake.apiKey, `http://127.0.0.1:${overFake.port}`);
    const overKeys = redisKeys(`${name}:over:`);
    const overRegistry = new CustomerRegistry({ redis, keys: overKeys, logger });
    const overCustomers = ids.slice(0, Math.min(CUSTOMERS, 1500));
    for (let start = 0; start < overCustomers.length; start += 50) {
      await Promise.all(
        overCustomers.slice(start, start + 50).map(async (id) => {
          const created = await overStripe.customers.create({ metadata: { keymeter_customer_id: id } });
          await overRegistry.create({ id, stripe_customer_id: created.id, stripe_subscription_id: "sub_bench" });
        }),
      );
    }
    const overWorker = new BillingWorker({
      redis: redisConnection(),
      bullConnection: redisConnection(true),
      clickhouse,
      keys: overKeys,
      tiers,
      provider: new StripeBillingProvider({
        stripe: overStripe,
        limiter: new MeterEventLimiter({ eventsPerSecond: 2 * OVER_LIMIT }),
        concurrency: 64,
        logger,
      }),
      live: true,
      logger,
      // The other 8,500 customers have no record under this prefix: left unbilled, not linked.
      linkOnDemand: false,
    });
    const o0 = performance.now();
    const over = await overWorker.sync.run("pro", "bench-over").catch(() => undefined);
    const overSeconds = (performance.now() - o0) / 1000;
    const overStats = await ask<FakeStats>(overFake.child, "stats", "stats");
    const overUndelivered = (await overWorker.metrics.meterEvents.get()).values
      .filter((value) => value.labels.outcome === "failed" || value.labels.outcome === "rejected")
      .reduce((sum, value) => sum + value.value, 0);
    await overWorker.stop();
    overFake.child.send("stop");

    // Peer in the same run: the bare SDK sending the same number of meter events to a fake
    // without a rate limit, 64 at a time, no limiter, no ClickHouse, no recording: what the
    // SDK, loopback HTTP and the fake manage on this machine right now.
    const peerFake = await startFake(1_000_000);
    const peerStripe = createStripeClient(peerFake.apiKey, `http://127.0.0.1:${peerFake.port}`);
    for (let start = 0; start < CUSTOMERS; start += 50) {
      await Promise.all(
        ids.slice(start, start + 50).map(async (id, offset) => {
          stripeIds[start + offset] = (
            await peerStripe.customers.create({ metadata: { keymeter_customer_id: id } })
          ).id;
        }),
      );
    }
    await peerStripe.billing.meters.create({
      display_name: "peer",
      event_name: "peer_requests",
      default_aggregation: { formula: "last" },
    });
    const p0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        for (let i = next++; i < CUSTOMERS; i = next++) {
          await peerStripe.billing.meterEvents.create({
            event_name: "peer_requests",
            identifier: `peer_${i}`,
            payload: { stripe_customer_id: stripeIds[i] ?? "", value: String(i) },
          });
        }
      }),
    );
    const peerPerSecond = CUSTOMERS / ((performance.now() - p0) / 1000);
    peerFake.child.send("stop");
    const sent = first.result?.sent ?? 0;
    const unhandled = first.result ? first.result.failed + first.result.rejected : CUSTOMERS - afterFirst.meterEvents;
    const lines: Array<[string, string | number]> = [
      ["stripe_sync_customers", CUSTOMERS],
      ["stripe_sync_seconds", first.seconds.toFixed(2)],
      ["stripe_sync_customers_per_s", Math.round(sent / first.seconds)],
      ["stripe_rate_limit_per_s", LIMIT],
      ["stripe_sync_fraction_of_limit", (sent / first.seconds / LIMIT).toFixed(3)],
      ["stripe_meter_events_accepted", afterFirst.meterEvents],
      ["stripe_429_seen", afterFirst.seen429],
      ["stripe_429_rate_limit", afterFirst.rateLimited],
      ["stripe_429_lock", afterFirst.locked],
      ["stripe_429_unhandled", unhandled],
      ["stripe_noop_run_s", second.seconds.toFixed(2)],
      ["peer_bare_sdk_unlimited_events_per_s", Math.round(peerPerSecond)],
      ["overdriven_limit_per_s", OVER_LIMIT],
      ["overdriven_client_limit_per_s", 2 * OVER_LIMIT],
      ["overdriven_customers", overCustomers.length],
      ["overdriven_accepted", overStats.meterEvents],
      ["overdriven_customers_per_s", Math.round((over?.sent ?? 0) / overSeconds)],
      ["overdriven_429_seen", overStats.seen429],
      ["overdriven_429_unhandled", overUndelivered],
      ["stripe_noop_run_sent", second.result?.sent ?? "failed"],
    ];
    for (const [key, value] of lines) process.stdout.write(`${key}: ${value}\n`);
    await worker.stop();
  } finally {
    child.send("stop");
    const all = await redis.keys(`${name}:*`);
    for (let i = 0; i < all.length; i += 1000) await redis.del(...all.slice(i, i + 1000));
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${name}` });
    await clickhouse.close();
    await Promise.all(connections.map((connection) => connection.quit().catch(() => undefined)));
  }
}

const [role, limit] = process.argv.slice(2);
if (role === "fake") await runFake(Number(limit));
else await main();
