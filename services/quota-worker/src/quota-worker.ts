import { keyChangedMessageSchema } from "@keymeter/shared/api-keys";
import {
  ClickHouseUsageReader,
  type Clock,
  CustomerRegistry,
  periodOf,
  QuotaOverrides,
  QuotaSubjects,
  systemClock,
  type TierCatalog,
  UsageCounters,
} from "@keymeter/shared/billing";
import {
  type CheckReason,
  createJobWorker,
  QUEUE_NAMES,
  QuotaCheckQueue,
  queueConnection,
  quotaCheckJobSchema,
  quotaSweepJobSchema,
  SWEEP_SCHEDULER_ID,
  webhookDeliveryJobSchema,
} from "@keymeter/shared/jobs";
import type { Logger } from "@keymeter/shared/runtime";
import type { ClickHouseClient, Redis, RedisKeys } from "@keymeter/shared/stores";
import { Queue, type Worker, type WorkerOptions } from "bullmq";
import { QuotaWorkerMetrics } from "./metrics";
import { QuotaEnforcer } from "./quota-enforcer";
import { ThresholdWebhooks } from "./threshold-webhooks";
import { WebhookDelivery } from "./webhook-delivery";

export interface QuotaWorkerOptions {
  /** Commands (reads, flags, counters). */
  redis: Redis;
  /** A connection of its own for key, override and customer change messages. */
  subscriber: Redis;
  /** For BullMQ (`createRedis(url, { forBullMQ: true })`); its workers duplicate it for blocking calls. */
  bullConnection: Redis;
  clickhouse: ClickHouseClient;
  keys: RedisKeys;
  tiers: TierCatalog;
  logger: Logger;
  metrics?: QuotaWorkerMetrics;
  /** Decides the current period (tests move it); BullMQ's own timing stays on the real clock. */
  now?: Clock;
  concurrency?: number;
  sweepIntervalMs?: number;
  thresholds?: readonly number[];
  webhookAttempts?: number;
  webhookBackoffMs?: number;
  webhookTimeoutMs?: number;
  /** Sweep once at start (default); tests that drive sweeps themselves turn it off. */
  sweepOnStart?: boolean;
  /** Extra BullMQ worker settings (tests shorten lock and stalled-check intervals). */
  workerOptions?: Omit<WorkerOptions, "connection" | "prefix" | "concurrency" | "autorun">;
}

/**
 * The quota worker: three BullMQ workers (checks, sweeps, webhook deliveries), the sweep's
 * job scheduler, and a subscription that turns key, override and customer changes into
 * immediate checks (a tier upgrade or a raised quota unflags at once). Any number of
 * instances may run: the scheduler is shared and checks are deduplicated per key and period.
 */
export class QuotaWorker {
  readonly metrics: QuotaWorkerMetrics;
  readonly enforcer: QuotaEnforcer;
  readonly checks: QuotaCheckQueue;
  readonly sweeps: Queue;
  private readonly webhooks: ThresholdWebhooks;
  private readonly delivery: WebhookDelivery;
  private readonly subjects: QuotaSubjects;
  private readonly now: Clock;
  private workers: Worker[] = [];

  constructor(private readonly options: QuotaWorkerOptions) {
    this.metrics = options.metrics ?? new QuotaWorkerMetrics();
    this.now = options.now ?? systemClock;
    const { redis, keys, logger } = options;
    const connection = queueConnection(options.bullConnection, keys);
    const customers = new CustomerRegistry({ redis, keys, logger });
    this.subjects = new QuotaSubjects({
      redis,
      keys,
      tiers: options.tiers,
      customers,
      overrides: new QuotaOverrides(redis, keys),
      now: this.now,
    });
    this.webhooks = new ThresholdWebhooks({
      redis,
      keys,
      connection,
      logger,
      metrics: this.metrics,
      attempts: options.webhookAttempts ?? 10,
      backoffMs: options.webhookBackoffMs ?? 2_000,
      now: this.now,
    });
    this.enforcer = new QuotaEnforcer({
      redis,
      keys,
      subjects: this.subjects,
      usage: new ClickHouseUsageReader(options.clickhouse),
      counters: new UsageCounters(redis, keys),
      webhooks: this.webhooks,
      metrics: this.metrics,
      logger,
      thresholds: options.thresholds ?? [80, 100],
      now: this.now,
    });
    this.delivery = new WebhookDelivery({
      redis: options.bullConnection,
      keys,
      customers,
      logger,
      metrics: this.metrics,
      timeoutMs: options.webhookTimeoutMs ?? 10_000,
    });
    this.checks = new QuotaCheckQueue(connection);
    this.sweeps = new Queue(QUEUE_NAMES.quotaSweeps, {
      connection: connection.connection,
      prefix: connection.prefix,
      defaultJobOptions: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
    });
  }

  async start(): Promise<void> {
    const { logger, keys } = this.options;
    const connection = queueConnection(this.options.bullConnection, keys);
    const common = {
      connection,
      logger,
      ...(this.options.workerOptions ? { worker: this.options.workerOptions } : {}),
    };
    const concurrency = this.options.concurrency ?? 8;
    this.workers = [
      createJobWorker(quotaCheckJobSchema, (data) => this.enforcer.checkKey(data.key_id, data.reason), {
        ...common,
        queue: QUEUE_NAMES.quotaChecks,
        concurrency,
      }),
      createJobWorker(quotaSweepJobSchema, () => this.enforcer.sweep(), {
        ...common,
        queue: QUEUE_NAMES.quotaSweeps,
        concurrency: 1,
      }),
      createJobWorker(webhookDeliveryJobSchema, (data) => this.delivery.deliver(data), {
        ...common,
        queue: QUEUE_NAMES.quotaWebhooks,
        concurrency,
      }),
    ];
    await Promise.all(this.workers.map((worker) => worker.waitUntilReady()));
    await this.subscribe();
    // BullMQ runs an `every` scheduler's first job at once: that is the start-up sweep (after a
    // deploy, a tiers change or a crash). Tests that drive sweeps themselves push it one interval out.
    const every = this.options.sweepIntervalMs ?? 60_000;
    await this.sweeps.upsertJobScheduler(
      SWEEP_SCHEDULER_ID,
      { every, ...(this.options.sweepOnStart === false ? { startDate: Date.now() + every } : {}) },
      { name: "sweep", data: { reason: "scheduled" } },
    );
    logger.info({ concurrency, sweep_interval_ms: every }, "quota worker started");
  }

  /** Enqueues a sweep now (deduplicated: at most one waiting). */
  async requestSweep(reason: "manual" = "manual"): Promise<void> {
    await this.sweeps.add("sweep", { reason }, { deduplication: { id: `sweep-${reason}` } });
  }

  /** Enqueues checks of these keys for their current period. */
  async requestChecks(keyIds: readonly string[], reason: CheckReason): Promise<void> {
    if (keyIds.length === 0) return;
    const subjects = await this.subjects.load(keyIds);
    const now = this.now();
    await this.checks.enqueue(
      keyIds.map((keyId) => ({
        key_id: keyId,
        reason,
        period_id: periodOf(now, subjects.get(keyId)?.timeZone ?? "UTC").id,
      })),
    );
  }

  /** Stops taking jobs and waits for the ones in hand (SIGTERM); stalled-job recovery covers a SIGKILL. */
  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
    await Promise.all([this.checks.close(), this.sweeps.close(), this.webhooks.close()]);
    await this.options.subscriber.quit().catch(() => undefined);
  }

  private async subscribe(): Promise<void> {
    const { subscriber, keys, logger } = this.options;
    subscriber.on("message", (channel: string, message: string) => {
      this.onChange(channel, message).catch((error: Error) =>
        // The sweep repairs what a lost message missed, within one interval.
        logger.warn({ channel, err: error.message }, "could not enqueue a check after a change"),
      );
    });
    subscriber.on("error", (error: Error) => logger.warn({ err: error.message }, "change subscription: redis error"));
    await subscriber.subscribe(keys.keyChangedChannel, keys.quotaOverrideChannel, keys.customerChangedChannel);
  }

  private async onChange(channel: string, message: string): Promise<void> {
    const { keys } = this.options;
    if (channel === keys.keyChangedChannel) {
      let json: unknown;
      try {
        json = JSON.parse(message);
      } catch {
        json = undefined;
      }
      const parsed = keyChangedMessageSchema.safeParse(json);
      if (parsed.success) await this.requestChecks([parsed.data.keyId], "key_changed");
    } else if (channel === keys.quotaOverrideChannel) {
      await this.requestChecks([message], "override_changed");
    } else if (channel === keys.customerChangedChannel) {
      await this.requestChecks(await this.subjects.customerKeyIds(message), "customer_changed");
    }
  }
}
