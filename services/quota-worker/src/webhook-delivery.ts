import { type CustomerRegistry, SIGNATURE_HEADER, signatureHeader, WEBHOOK_ID_HEADER } from "@keymeter/shared/billing";
import type { WebhookDeliveryJob } from "@keymeter/shared/jobs";
import type { Logger } from "@keymeter/shared/runtime";
import type { Redis, RedisKeys } from "@keymeter/shared/stores";
import type { QuotaWorkerMetrics } from "./metrics";

const SENT_MARKER_MS = 35 * 86_400_000;

export interface WebhookDeliveryOptions {
  redis: Redis;
  keys: RedisKeys;
  customers: CustomerRegistry;
  logger: Logger;
  metrics: QuotaWorkerMetrics;
  timeoutMs: number;
  /** Wall clock for the signature timestamp (receivers compare it with theirs). */
  wallClock?: () => number;
}

export type DeliveryOutcome = "delivered" | "already_delivered" | "endpoint_removed";

/**
 * Delivers one threshold event to one endpoint, signed with the endpoint's secret (read now,
 * never queued): `Keymeter-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
 * A non-2xx answer or a timeout fails the attempt and BullMQ retries with exponential
 * back-off. After a 2xx a marker is written, so a worker killed before BullMQ records the
 * completion does not send it again when the stalled job is retried.
 */
export class WebhookDelivery {
  private readonly wallClock: () => number;

  constructor(private readonly options: WebhookDeliveryOptions) {
    this.wallClock = options.wallClock ?? Date.now;
  }

  async deliver(job: WebhookDeliveryJob): Promise<DeliveryOutcome> {
    const { redis, keys, customers, logger, metrics } = this.options;
    const deliveryId = `${job.event.id}.${job.webhook_id}`;
    if ((await redis.exists(keys.webhookSent(deliveryId))) === 1) return "already_delivered";
    const customer = await customers.get(job.customer_id);
    const endpoint = customer?.webhooks.find((hook) => hook.id === job.webhook_id);
    if (!endpoint) {
      logger.info({ customer_id: job.customer_id, webhook_id: job.webhook_id }, "webhook endpoint removed; not sent");
      return "endpoint_removed";
    }
    const body = JSON.stringify(job.event);
    const timestamp = Math.floor(this.wallClock() / 1000);
    let status: number;
    try {
      const response = await fetch(endpoint.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "keymeter-webhooks/1",
          [SIGNATURE_HEADER]: signatureHeader(endpoint.secret, timestamp, body),
          [WEBHOOK_ID_HEADER]: job.event.id,
        },
        body,
        signal: AbortSignal.timeout(this.options.timeoutMs),
        redirect: "manual",
      });
      status = response.status;
      await response.body?.cancel();
    } catch (error) {
      metrics.webhookFailures.inc();
      throw new Error(`webhook ${job.webhook_id} unreachable: ${(error as Error).message}`);
    }
    if (status < 200 || status >= 300) {
      metrics.webhookFailures.inc();
      throw new Error(`webhook ${job.webhook_id} answered ${status}`);
    }
    await redis.set(keys.webhookSent(deliveryId), "1", "PX", SENT_MARKER_MS);
    metrics.webhookDeliveries.inc();
    logger.info(
      { customer_id: job.customer_id, webhook_id: job.webhook_id, event_id: job.event.id, status },
      "threshold webhook delivered",
    );
    return "delivered";
  }
}
