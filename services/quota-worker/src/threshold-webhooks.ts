import { createHash } from "node:crypto";
import type { Period, QuotaLimit, QuotaSubject } from "@keymeter/shared/billing";
import { QUEUE_NAMES, type QueueConnection, type ThresholdEvent, type WebhookDeliveryJob } from "@keymeter/shared/jobs";
import type { Logger } from "@keymeter/shared/runtime";
import type { Redis, RedisKeys } from "@keymeter/shared/stores";
import { Queue } from "bullmq";
import type { QuotaWorkerMetrics } from "./metrics";

/** Markers and delivery jobs are kept this long after the period: longer than any retry. */
const KEEP_AFTER_PERIOD_MS = 35 * 86_400_000;

/** A key that reached thresholds in a period. */
export interface ThresholdCrossing {
  subject: QuotaSubject;
  limit: QuotaLimit & { quota: number };
  period: Period;
  used: number;
  /** Percentages reached, lowest first. */
  reached: number[];
}

export interface ThresholdWebhooksOptions {
  redis: Redis;
  keys: RedisKeys;
  connection: QueueConnection;
  logger: Logger;
  metrics: QuotaWorkerMetrics;
  attempts: number;
  backoffMs: number;
  now: () => number;
}

/**
 * Schedules one signed webhook per key, threshold, period and endpoint. Exactly once: the
 * delivery job's id is derived from (event, endpoint), so adding it again is a no-op while
 * BullMQ keeps the job (35 days after completion or failure); a Redis marker written after
 * the add lets later checks skip the work. A crash between the two only repeats the no-op add.
 * Deliveries run on their own queue: an endpoint that fails never delays a flag.
 */
export class ThresholdWebhooks {
  readonly queue: Queue<WebhookDeliveryJob>;

  constructor(private readonly options: ThresholdWebhooksOptions) {
    this.queue = new Queue<WebhookDeliveryJob>(QUEUE_NAMES.quotaWebhooks, {
      connection: options.connection.connection,
      prefix: options.connection.prefix,
    });
  }

  /** Enqueues the deliveries of every threshold reached that was not enqueued before. */
  async schedule(crossings: readonly ThresholdCrossing[]): Promise<number> {
    const withEndpoints = crossings.filter((c) => c.subject.webhooks.length > 0 && c.reached.length > 0);
    const pending = withEndpoints.flatMap((crossing) =>
      crossing.reached.map((percent) => ({
        crossing,
        percent,
        marker: this.options.keys.webhookThreshold(crossing.period.id, crossing.subject.keyId, percent),
      })),
    );
    let enqueued = 0;
    for (let start = 0; start < pending.length; start += 1000) {
      const chunk = pending.slice(start, start + 1000);
      const marked = await this.options.redis.mget(chunk.map((item) => item.marker));
      const todo = chunk.filter((_, i) => marked[i] === null);
      if (todo.length === 0) continue;
      const jobs = todo.flatMap(({ crossing, percent }) => {
        const event = thresholdEvent(crossing, percent, this.options.now());
        return crossing.subject.webhooks.map((endpoint) => ({
          name: "deliver",
          data: { customer_id: crossing.subject.customerId, webhook_id: endpoint.id, event },
          opts: {
            jobId: `${event.id}.${endpoint.id}`,
            attempts: this.options.attempts,
            backoff: { type: "exponential", delay: this.options.backoffMs },
            removeOnComplete: { age: Math.ceil((crossing.period.end + KEEP_AFTER_PERIOD_MS - Date.now()) / 1000) },
            removeOnFail: { age: Math.ceil((crossing.period.end + KEEP_AFTER_PERIOD_MS - Date.now()) / 1000) },
          },
        }));
      });
      await this.queue.addBulk(jobs);
      const pipeline = this.options.redis.pipeline();
      for (const item of todo) {
        pipeline.set(item.marker, "1", "PXAT", item.crossing.period.end + KEEP_AFTER_PERIOD_MS);
      }
      await pipeline.exec();
      enqueued += jobs.length;
      for (const item of todo) {
        this.options.logger.info(
          { key_id: item.crossing.subject.keyId, period: item.crossing.period.id, threshold: item.percent },
          "threshold webhooks enqueued",
        );
      }
    }
    this.options.metrics.webhooksEnqueued.inc(enqueued);
    return enqueued;
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}

/** The event for a key reaching `percent` of its quota; its id is the same every time it is built. */
export function thresholdEvent(crossing: ThresholdCrossing, percent: number, now: number): ThresholdEvent {
  const { subject, period, limit } = crossing;
  const id = createHash("sha256")
    .update(`${subject.keyId}|${period.id}|${period.start}|${percent}`)
    .digest("hex")
    .slice(0, 32);
  return {
    id: `evt_${id}`,
    type: "quota.threshold_reached",
    created_at: new Date(now).toISOString(),
    data: {
      customer_id: subject.customerId,
      key_id: subject.keyId,
      threshold_percent: percent,
      used: crossing.used,
      quota: limit.quota,
      overage_policy: limit.overage,
      period: { id: period.id, start: new Date(period.start).toISOString(), end: new Date(period.end).toISOString() },
    },
  };
}
