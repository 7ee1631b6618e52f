import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Aggregator } from "@keymeter/aggregator";
import { QuotaHook } from "@keymeter/aggregator";
import { QuotaWorker, type QuotaWorkerOptions } from "@keymeter/quota-worker";
import {
  CustomerRegistry,
  parseTiers,
  QuotaOverrides,
  QuotaSubjects,
  SIGNATURE_HEADER,
  UsageCounters,
  verifyWebhookSignature,
  WEBHOOK_ID_HEADER,
} from "@keymeter/shared/billing";
import { QuotaCheckQueue, queueConnection } from "@keymeter/shared/jobs";
import { createRedis, type Redis } from "@keymeter/shared/stores";
import { KafkaEmitter } from "@keymeter/shared/usage";
import { closeServer, type GatewayInstance, KeyStack, listenOn } from "./key-stack";
import { createTestPipeline, startTestAggregator, type TestPipeline } from "./pipeline";

/** Tiers for quota tests: a quota of 100 that blocks, its upgrade, and one that bills overage. */
export const QUOTA_TIERS_JSON = {
  tiers: [
    { name: "metered", rate_limit_rps: 10_000, burst: 10_000, monthly_quota: 100, overage: "block" },
    { name: "metered_plus", rate_limit_rps: 10_000, burst: 10_000, monthly_quota: 1_000, overage: "block" },
    {
      name: "metered_bill",
      rate_limit_rps: 10_000,
      burst: 10_000,
      monthly_quota: 100,
      overage: "bill",
      stripe: { meter_event_name: "m", price_id: "p" },
    },
  ],
};
export const QUOTA_TIERS = parseTiers(QUOTA_TIERS_JSON);

/** A webhook delivery as the receiver saw it. */
export interface ReceivedWebhook {
  /** When it arrived (epoch ms). */
  at: number;
  id: string;
  body: string;
  event: { id: string; type: string; data: { key_id: string; threshold_percent: number; used: number; quota: number } };
  validSignature: boolean;
}

/** A local HTTP endpoint that records (and checks the signature of) every webhook delivery. */
export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  /** Answer with this status (500: the endpoint is failing). */
  status = 200;
  secret = "";
  url = "";
  private server: Server | undefined;

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString();
        const header = req.headers[SIGNATURE_HEADER];
        if (this.status >= 200 && this.status < 300) {
          this.received.push({
            at: Date.now(),
            id: String(req.headers[WEBHOOK_ID_HEADER]),
            body,
            event: JSON.parse(body),
            validSignature: verifyWebhookSignature(this.secret, typeof header === "string" ? header : undefined, body),
          });
        }
        res.writeHead(this.status).end();
      });
    });
    this.url = `http://127.0.0.1:${await listenOn(this.server)}/hooks`;
    return this.url;
  }

  forKey(keyId: string): ReceivedWebhook[] {
    return this.received.filter((hook) => hook.event.data.key_id === keyId);
  }

  async close(): Promise<void> {
    if (this.server) await closeServer(this.server);
  }
}

/**
 * The whole quota path on the real services: gateway (Kafka emitter) -> Kafka -> aggregator
 * (with the quota hook) -> ClickHouse, the quota worker in process with an injected clock,
 * a webhook receiver. One namespace per test (topics, database, Redis prefix, queues).
 */
export class QuotaStack {
  clockOffsetMs = 0;
  readonly now = () => Date.now() + this.clockOffsetMs;
  readonly keyStack: KeyStack;
  readonly receiver = new WebhookReceiver();
  pipeline!: TestPipeline;
  customers!: CustomerRegistry;
  overrides!: QuotaOverrides;
  gateway!: GatewayInstance;
  worker: QuotaWorker | undefined;
  private emitter!: KafkaEmitter;
  private aggregator!: Aggregator;
  private hookChecks!: QuotaCheckQueue;
  private readonly connections: Redis[] = [];
  private spoolDir = "";

  private constructor(redisUrl?: string) {
    this.keyStack = new KeyStack({ tiers: QUOTA_TIERS, ...(redisUrl ? { redisUrl } : {}) });
  }

  static async start(
    label: string,
    options: { redisUrl?: string; worker?: boolean; workerOptions?: Partial<QuotaWorkerOptions> } = {},
  ): Promise<QuotaStack> {
    const stack = new QuotaStack(options.redisUrl);
    await stack.init(label, options);
    return stack;
  }

  private async init(label: string, options: { worker?: boolean; workerOptions?: Partial<QuotaWorkerOptions> }) {
    const { keyStack } = this;
    this.pipeline = await createTestPipeline(label, { partitions: 2 });
    this.customers = new CustomerRegistry({ redis: keyStack.redis, keys: keyStack.keys, logger: keyStack.logger });
    this.overrides = new QuotaOverrides(keyStack.redis, keyStack.keys);
    await this.receiver.start();

    this.spoolDir = mkdtempSync(join(tmpdir(), "quota-spool-"));
    this.emitter = new KafkaEmitter({
      kafka: this.pipeline.kafka,
      topic: this.pipeline.topics.events,
      logger: this.pipeline.logger,
      spoolDir: this.spoolDir,
      lingerMs: 5,
    });
    await this.emitter.start();
    this.gateway = await keyStack.gateway({ forwardTo: this.emitter });

    const hookRedis = this.connection();
    this.hookChecks = new QuotaCheckQueue(queueConnection(this.connection(true), keyStack.keys));
    const hook = new QuotaHook({
      subjects: new QuotaSubjects({
        redis: hookRedis,
        keys: keyStack.keys,
        tiers: QUOTA_TIERS,
        customers: new CustomerRegistry({ redis: hookRedis, keys: keyStack.keys, logger: keyStack.logger }),
        overrides: new QuotaOverrides(hookRedis, keyStack.keys),
      }),
      counters: new UsageCounters(hookRedis, keyStack.keys),
      checks: this.hookChecks,
      now: this.now,
    });
    this.aggregator = await startTestAggregator(this.pipeline, {
      afterInsert: hook.afterInsert,
      redis: this.connection(),
    });
    if (options.worker !== false) await this.startWorker(options.workerOptions);
  }

  /** A Redis connection closed with the stack. */
  connection(forBullMQ = false): Redis {
    const redis = createRedis(this.keyStack.redisUrl, { forBullMQ, logger: this.keyStack.logger });
    this.connections.push(redis);
    return redis;
  }

  async startWorker(options: Partial<QuotaWorkerOptions> = {}): Promise<QuotaWorker> {
    this.worker = new QuotaWorker({
      redis: this.connection(),
      subscriber: createRedis(this.keyStack.redisUrl, { logger: this.keyStack.logger }),
      bullConnection: this.connection(true),
      clickhouse: this.pipeline.clickhouse,
      keys: this.keyStack.keys,
      tiers: QUOTA_TIERS,
      logger: this.keyStack.logger,
      now: this.now,
      webhookBackoffMs: 100,
      ...options,
    });
    await this.worker.start();
    return this.worker;
  }

  /** A customer whose webhook endpoint is the receiver; returns its id. */
  async customer(timeZone = "UTC"): Promise<string> {
    const id = `cus_${Math.random().toString(36).slice(2, 10)}`;
    const created = await this.customers.create({
      id,
      name: "test",
      time_zone: timeZone,
      webhooks: [{ url: this.receiver.url }],
    });
    this.receiver.secret = created.webhook_secrets[0]?.secret ?? "";
    return id;
  }

  async close(): Promise<void> {
    await this.worker?.stop();
    await this.aggregator?.stop();
    await this.emitter?.close();
    await this.hookChecks?.close();
    await this.receiver.close();
    await this.keyStack.close();
    await Promise.all(this.connections.map((redis) => redis.quit().catch(() => undefined)));
    await this.pipeline?.close();
    rmSync(this.spoolDir, { recursive: true, force: true });
  }
}
