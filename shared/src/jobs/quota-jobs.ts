import { Queue } from "bullmq";
import type { QuotaCheckJob } from "./job-schemas";
import { QUEUE_NAMES, type QueueConnection } from "./queues";

/**
 * Enqueues quota checks. A key has at most one check waiting per period: BullMQ
 * deduplication on key and period, with `keepLastIfActive` so a batch that arrives while a
 * check is running still gets a check after it (never lost in the gap).
 */
export class QuotaCheckQueue {
  readonly queue: Queue;

  constructor(connection: QueueConnection) {
    this.queue = new Queue(QUEUE_NAMES.quotaChecks, {
      connection: connection.connection,
      prefix: connection.prefix,
      defaultJobOptions: {
        attempts: 5,
        backoff: { type: "exponential", delay: 200 },
        removeOnComplete: { count: 1000 },
        removeOnFail: { age: 7 * 86_400 },
      },
    });
  }

  /** Asks for checks of these keys (each once per key and period while one is pending). */
  async enqueue(checks: ReadonlyArray<QuotaCheckJob & { period_id: string }>): Promise<void> {
    if (checks.length === 0) return;
    await this.queue.addBulk(
      checks.map(({ period_id, ...data }) => ({
        name: "check",
        data,
        opts: { deduplication: { id: `${data.key_id}.${period_id}`, keepLastIfActive: true } },
      })),
    );
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
