import { type Clock, CustomerRegistry, systemClock, type TierCatalog } from "@keymeter/shared/billing";
import {
  BillingAuditLog,
  BillingSetup,
  BillingState,
  BillingUsageReader,
  DIFFERENCE_KINDS,
  Reconciler,
} from "@keymeter/shared/billing/invoicing";
import type { BillingProvider } from "@keymeter/shared/billing/provider";
import {
  BILLING_CLOSE_SCHEDULER_ID,
  BILLING_RECONCILE_SCHEDULER_ID,
  billingPassJobSchema,
  billingSyncJobSchema,
  billingSyncSchedulerId,
  createJobWorker,
  QUEUE_NAMES,
  queueConnection,
} from "@keymeter/shared/jobs";
import type { Logger } from "@keymeter/shared/runtime";
import type { ClickHouseClient, Redis, RedisKeys } from "@keymeter/shared/stores";
import { type JobsOptions, Queue, type Worker, type WorkerOptions } from "bullmq";
import { BillingWorkerMetrics } from "./metrics";
import { MonthClose } from "./month-close";
import { StripeCustomers } from "./stripe-customers";
import { type BillingDeps, type SyncResult, TierSync } from "./tier-sync";

export interface BillingWorkerOptions {
  redis: Redis;
  /** For BullMQ (`createRedis(url, { forBullMQ: true })`). */
  bullConnection: Redis;
  clickhouse: ClickHouseClient;
  keys: RedisKeys;
  tiers: TierCatalog;
  provider: BillingProvider;
  /** False for the dry run (nothing sent, no made-up id stored). */
  live: boolean;
  logger: Logger;
  metrics?: BillingWorkerMetrics;
  /** Decides periods and meter event times (tests move it); BullMQ's timing stays on the real clock. */
  now?: Clock;
  syncEveryMs?: number;
  closeEveryMs?: number;
  closeSettleMs?: number;
  closeGraceMs?: number;
  reconcileEveryMs?: number;
  batchSize?: number;
  linkOnDemand?: boolean;
  workerOptions?: Omit<WorkerOptions, "connection" | "prefix" | "concurrency" | "autorun">;
}

const JOB_OPTIONS: JobsOptions = {
  attempts: 5,
  backoff: { type: "exponential", delay: 5_000 },
  removeOnComplete: { count: 200 },
  removeOnFail: { count: 200 },
};

/**
 * The billing worker: a BullMQ job scheduler per billed tier (each on its tier's cadence) whose
 * jobs sync that tier, a scheduler every minute for the month close, one for the local
 * reconciliation gauge. Any number of instances may run: schedulers are shared, and a sync
 * that overlaps another of the same tier only re-sends totals (`last` meters, deterministic
 * identifiers); within one instance a tier never runs twice at once.
 */
export class BillingWorker {
  readonly metrics: BillingWorkerMetrics;
  readonly sync: TierSync;
  readonly close: MonthClose;
  readonly reconciler: Reconciler;
  readonly setup: BillingSetup;
  private readonly syncQueue: Queue;
  private readonly closeQueue: Queue;
  private readonly reconcileQueue: Queue;
  private readonly running = new Set<string>();
  private workers: Worker[] = [];

  constructor(private readonly options: BillingWorkerOptions) {
    this.metrics = options.metrics ?? new BillingWorkerMetrics();
    const now = options.now ?? systemClock;
    const { redis, keys, logger, tiers, provider, live } = options;
    const customers = new CustomerRegistry({ redis, keys, logger, now });
    this.setup = new BillingSetup({ provider, live, tiers, customers, logger, now });
    const state = new BillingState(redis, keys);
    const usage = new BillingUsageReader(options.clickhouse);
    const deps: BillingDeps = {
      usage,
      state,
      audit: new BillingAuditLog(options.clickhouse),
      provider,
      live,
      setup: this.setup,
      customers,
      stripeCustomers: new StripeCustomers({
        setup: this.setup,
        live,
        linkOnDemand: options.linkOnDemand ?? true,
        logger,
      }),
      tiers,
      logger,
      metrics: this.metrics,
      now,
      batchSize: options.batchSize ?? 500,
    };
    this.sync = new TierSync(deps);
    const closeGraceMs = options.closeGraceMs ?? 3_600_000;
    this.close = new MonthClose(deps, { settleMs: options.closeSettleMs ?? 120_000, graceMs: closeGraceMs });
    this.reconciler = new Reconciler({
      usage,
      state,
      customers,
      tiers,
      provider,
      setup: this.setup,
      closeGraceMs,
      now,
    });
    const connection = queueConnection(options.bullConnection, keys);
    const queue = (name: string) =>
      new Queue(name, { connection: connection.connection, prefix: connection.prefix, defaultJobOptions: JOB_OPTIONS });
    this.syncQueue = queue(QUEUE_NAMES.billingSync);
    this.closeQueue = queue(QUEUE_NAMES.billingClose);
    this.reconcileQueue = queue(QUEUE_NAMES.billingReconcile);
  }

  async start(): Promise<void> {
    const { logger, keys, tiers } = this.options;
    const billed = tiers.billed();
    const connection = queueConnection(this.options.bullConnection, keys);
    const common = {
      connection,
      logger,
      ...(this.options.workerOptions ? { worker: this.options.workerOptions } : {}),
    };
    this.workers = [
      createJobWorker(billingSyncJobSchema, (data, job) => this.runSync(data.tier, String(job.id)), {
        ...common,
        queue: QUEUE_NAMES.billingSync,
        concurrency: Math.max(1, billed.length),
      }),
      createJobWorker(billingPassJobSchema, (_data, job) => this.close.run(String(job.id)), {
        ...common,
        queue: QUEUE_NAMES.billingClose,
        concurrency: 1,
      }),
      createJobWorker(billingPassJobSchema, () => this.refreshDifferences(), {
        ...common,
        queue: QUEUE_NAMES.billingReconcile,
        concurrency: 1,
      }),
    ];
    await Promise.all(this.workers.map((worker) => worker.waitUntilReady()));

    const wanted = new Set(billed.map((tier) => billingSyncSchedulerId(tier.name)));
    for (const scheduler of await this.syncQueue.getJobSchedulers()) {
      const id = scheduler.key;
      if (!wanted.has(id)) {
        await this.syncQueue.removeJobScheduler(id);
        logger.info({ scheduler: id }, "removed the sync schedule of a tier that is no longer billed");
      }
    }
    const cadences: Record<string, number> = {};
    for (const tier of billed) {
      const every = tier.stripe.sync_every_ms ?? this.options.syncEveryMs ?? 300_000;
      cadences[tier.name] = every;
      await this.syncQueue.upsertJobScheduler(
        billingSyncSchedulerId(tier.name),
        { every },
        { name: "sync", data: { tier: tier.name, reason: "scheduled" }, opts: JOB_OPTIONS },
      );
    }
    await this.closeQueue.upsertJobScheduler(
      BILLING_CLOSE_SCHEDULER_ID,
      { every: this.options.closeEveryMs ?? 60_000 },
      { name: "close", data: { reason: "scheduled" }, opts: JOB_OPTIONS },
    );
    await this.reconcileQueue.upsertJobScheduler(
      BILLING_RECONCILE_SCHEDULER_ID,
      { every: this.options.reconcileEveryMs ?? 900_000 },
      { name: "reconcile", data: { reason: "scheduled" }, opts: { ...JOB_OPTIONS, attempts: 1 } },
    );
    // After a deploy or a crash: sync and close at once rather than one interval later.
    for (const tier of billed) await this.requestSync(tier.name, "startup");
    await this.requestClose("startup");
    logger.info({ tiers: cadences, dry_run: !this.options.live }, "billing worker started");
  }

  /** Enqueues a sync of `tier` now (at most one waiting per tier and reason). */
  async requestSync(tier: string, reason: "startup" | "manual" = "manual"): Promise<void> {
    await this.syncQueue.add("sync", { tier, reason }, { deduplication: { id: `sync-${tier}-${reason}` } });
  }

  async requestClose(reason: "startup" | "manual" = "manual"): Promise<void> {
    await this.closeQueue.add("close", { reason }, { deduplication: { id: `close-${reason}` } });
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
    await Promise.all([this.syncQueue.close(), this.closeQueue.close(), this.reconcileQueue.close()]);
  }

  private async runSync(tier: string, runId: string): Promise<SyncResult | { skipped: true }> {
    if (this.running.has(tier)) {
      this.metrics.syncRuns.inc({ tier, outcome: "skipped" });
      return { skipped: true };
    }
    this.running.add(tier);
    const timer = this.metrics.syncSeconds.startTimer({ tier });
    try {
      const result = await this.sync.run(tier, runId);
      this.metrics.syncRuns.inc({ tier, outcome: "ok" });
      this.metrics.lastSync.set({ tier }, Date.now() / 1000);
      return result;
    } catch (error) {
      this.metrics.syncRuns.inc({ tier, outcome: "failed" });
      throw error;
    } finally {
      timer();
      this.running.delete(tier);
    }
  }

  /** The previous period against the worker's own records (no Stripe calls): the gauge finance alerts on. */
  async refreshDifferences(): Promise<Record<string, number>> {
    const report = await this.reconciler.reconcile({ stripe: false });
    const counts = Object.fromEntries(DIFFERENCE_KINDS.map((kind) => [kind, 0])) as Record<string, number>;
    for (const difference of report.differences) counts[difference.kind] = (counts[difference.kind] ?? 0) + 1;
    for (const [kind, count] of Object.entries(counts)) this.metrics.differences.set({ kind }, count);
    return counts;
  }
}
