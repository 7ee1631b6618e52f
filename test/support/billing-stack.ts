import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { BillingWorker, type BillingWorkerOptions } from "@keymeter/billing-worker";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { CustomerRegistry, loadTiers, type Period, periodOf, type TierCatalog } from "@keymeter/shared/billing";
import { BillingSetup } from "@keymeter/shared/billing/invoicing";
import { createStripeClient, MeterEventLimiter, StripeBillingProvider } from "@keymeter/shared/billing/provider";
import { createLogger, type Logger } from "@keymeter/shared/runtime";
import {
  type ClickHouseClient,
  type ClickHouseConnection,
  createClickHouse,
  createRedis,
  quoteString,
  type Redis,
  type RedisKeys,
  redisKeys,
  runMigrations,
  toDateTime,
} from "@keymeter/shared/stores";
import { services, uniqueName } from "./services";
import { StripeFake, type StripeFakeOptions } from "./stripe-fake";
import { insertUsage } from "./usage-inserts";

const WORKER_MAIN = join(import.meta.dirname, "../../services/billing-worker/src/main.ts");

/** One usage row straight into `usage_events` (the views fill the rollups). */
export interface UsageRow {
  customer: string;
  tier: string;
  units: number;
  /** Event time, ms. */
  at: number;
  key?: string;
}

/**
 * Billing on the real stores, isolated per test: a ClickHouse database with the migrations, a
 * Redis prefix (keys and BullMQ queues), the recording Stripe fake, the shipped tiers (pro and
 * enterprise billed, free not). `now` moves the worker's clock together with the fake's.
 */
export class BillingStack {
  readonly name = uniqueName("billing");
  readonly logger: Logger = createLogger("test", process.env.KEYMETER_TEST_VERBOSE ? "debug" : "silent");
  readonly keys: RedisKeys = redisKeys(`${this.name}:`);
  readonly tiers: TierCatalog = loadTiers();
  clockOffsetMs = 0;
  readonly now = () => Date.now() + this.clockOffsetMs;
  connection!: ClickHouseConnection;
  clickhouse!: ClickHouseClient;
  redis!: Redis;
  fake!: StripeFake;
  customers!: CustomerRegistry;
  provider!: StripeBillingProvider;
  setup!: BillingSetup;
  worker: BillingWorker | undefined;
  private readonly connections: Redis[] = [];
  private readonly children = new Set<ChildProcess>();

  static async start(fakeOptions: StripeFakeOptions = {}, startAt?: number): Promise<BillingStack> {
    const stack = new BillingStack();
    if (startAt !== undefined) stack.clockOffsetMs = startAt - Date.now();
    stack.connection = {
      url: services().clickhouseUrl,
      username: "default",
      password: "",
      database: stack.name,
    };
    await runMigrations(stack.connection, { dir: MIGRATIONS_DIR });
    stack.clickhouse = createClickHouse(stack.connection);
    stack.redis = stack.redisConnection();
    stack.fake = await StripeFake.start({ ...fakeOptions, ...(startAt !== undefined ? { startAt } : {}) });
    stack.customers = new CustomerRegistry({
      redis: stack.redis,
      keys: stack.keys,
      logger: stack.logger,
      now: stack.now,
    });
    stack.provider = new StripeBillingProvider({
      stripe: createStripeClient(stack.fake.apiKey, `http://${stack.fake.host}:${stack.fake.port}`),
      limiter: new MeterEventLimiter({ eventsPerSecond: 100_000 }),
      now: stack.now,
    });
    stack.setup = new BillingSetup({
      provider: stack.provider,
      live: true,
      tiers: stack.tiers,
      customers: stack.customers,
      logger: stack.logger,
      now: stack.now,
    });
    return stack;
  }

  /** Moves the worker's and the fake's clocks to `ms`. */
  setNow(ms: number): void {
    this.clockOffsetMs = ms - Date.now();
    this.fake.setNow(ms);
  }

  redisConnection(forBullMQ = false): Redis {
    const redis = createRedis(services().redisUrl, { forBullMQ });
    redis.on("error", () => undefined);
    this.connections.push(redis);
    return redis;
  }

  /** Customers with records in `timeZone`, linked to Stripe (customer + subscription with every billed price). */
  async linkedCustomers(ids: readonly string[], timeZone = "UTC"): Promise<Map<string, string>> {
    const stripeIds = new Map<string, string>();
    for (const id of ids) {
      await this.customers.create({ id, time_zone: timeZone });
      stripeIds.set(id, (await this.setup.link(id)).stripe_customer_id);
    }
    return stripeIds;
  }

  async insertUsage(rows: readonly UsageRow[]): Promise<void> {
    await insertUsage(
      this.clickhouse,
      rows.map((row) => ({
        keyId: row.key ?? `key_${row.customer.replace(/[^A-Za-z0-9]/g, "")}00000000`,
        customerId: row.customer,
        tier: row.tier,
        at: row.at,
        units: row.units,
      })),
    );
  }

  /** ClickHouse's truth from the raw table: units per tier of one customer in `period`. */
  async units(customer: string, period: Pick<Period, "start" | "end">): Promise<Map<string, number>> {
    const result = await this.clickhouse.query({
      query: `SELECT tier, sum(units) AS units FROM usage_events WHERE customer_id = ${quoteString(customer)} AND event_time >= toDateTime(${quoteString(toDateTime(period.start))}, 'UTC') AND event_time < toDateTime(${quoteString(toDateTime(period.end))}, 'UTC') GROUP BY tier`,
      format: "JSONEachRow",
    });
    const rows = await result.json<{ tier: string; units: string }>();
    return new Map(rows.map((row) => [row.tier, Number(row.units)]));
  }

  /** ClickHouse's truth from the raw table for every customer at once: `${customer} ${tier}` -> units in `period`. */
  async unitsByCustomer(period: Pick<Period, "start" | "end">): Promise<Map<string, number>> {
    const result = await this.clickhouse.query({
      query: `SELECT customer_id, tier, sum(units) AS units FROM usage_events WHERE event_time >= toDateTime(${quoteString(toDateTime(period.start))}, 'UTC') AND event_time < toDateTime(${quoteString(toDateTime(period.end))}, 'UTC') GROUP BY customer_id, tier`,
      format: "JSONEachRow",
    });
    const rows = await result.json<{ customer_id: string; tier: string; units: string }>();
    return new Map(rows.map((row) => [`${row.customer_id} ${row.tier}`, Number(row.units)]));
  }

  /** What Stripe (the fake) would bill on the tier's meter for the customer in `period`. */
  stripeTotal(stripeCustomerId: string, tier: string, period: Pick<Period, "start" | "end">): number {
    const eventName = this.tiers.get(tier)?.stripe?.meter_event_name;
    if (!eventName) throw new Error(`tier ${tier} has no meter`);
    if (!this.fake.meterByEventName(eventName)) return 0;
    return this.fake.meterTotal({
      customer: stripeCustomerId,
      eventName,
      start: Math.floor(period.start / 1000),
      end: Math.floor(period.end / 1000),
    });
  }

  periodOf(ms: number, timeZone = "UTC"): Period {
    return periodOf(ms, timeZone);
  }

  /** The worker in this process, on the injected clock. */
  async startWorker(options: Partial<BillingWorkerOptions> = {}): Promise<BillingWorker> {
    this.worker = new BillingWorker({
      redis: this.redisConnection(),
      bullConnection: this.redisConnection(true),
      clickhouse: this.clickhouse,
      keys: this.keys,
      tiers: this.tiers,
      provider: this.provider,
      live: true,
      logger: this.logger,
      now: this.now,
      closeSettleMs: 0,
      ...options,
    });
    await this.worker.start();
    return this.worker;
  }

  /** The worker's main as a child process (so it can be SIGKILLed), pointed at the fake. */
  spawnWorker(env: Record<string, string> = {}): ChildProcess {
    const child = spawn(process.execPath, ["--import", "tsx", WORKER_MAIN], {
      env: {
        ...process.env,
        REDIS_URL: services().redisUrl,
        REDIS_KEY_PREFIX: `${this.name}:`,
        CLICKHOUSE_URL: this.connection.url,
        CLICKHOUSE_DATABASE: this.connection.database,
        STRIPE_API_KEY: this.fake.apiKey,
        STRIPE_API_HOST: this.fake.host,
        STRIPE_API_PORT: String(this.fake.port),
        STRIPE_API_PROTOCOL: "http",
        METRICS_PORT: "0",
        LOG_LEVEL: process.env.KEYMETER_TEST_VERBOSE ? "debug" : "warn",
        ...env,
      },
      stdio: ["ignore", process.env.KEYMETER_TEST_VERBOSE ? "inherit" : "ignore", "pipe"],
    });
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    child.stderr?.on("data", (chunk: Buffer) => {
      if (process.env.KEYMETER_TEST_VERBOSE) process.stderr.write(chunk);
    });
    return child;
  }

  async close(): Promise<void> {
    await Promise.all(
      [...this.children].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once("exit", () => resolve());
            child.kill("SIGKILL");
          }),
      ),
    );
    await this.worker?.stop();
    await this.fake?.close();
    const keys = await this.redis.keys(`${this.name}:*`);
    for (let i = 0; i < keys.length; i += 1000) await this.redis.del(...keys.slice(i, i + 1000));
    await Promise.all(this.connections.map((redis) => redis.quit().catch(() => undefined)));
    await this.clickhouse.command({ query: `DROP DATABASE IF EXISTS ${this.name}` });
    await this.clickhouse.close();
  }
}
