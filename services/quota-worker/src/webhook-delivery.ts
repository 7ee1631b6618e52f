import { type CustomerRegistry, SIGNATURE_HEADER, signatureHeader, WEBHOOK_ID_HEADER } from "@keymeter/shared/billing";
import type { WebhookDeliveryJob } from "@keymeter/shared/jobs";
import type { Logger } from "@keymeter/shared/runtime";
import type { Redis, RedisKeys } from "@keymeter/shared/stores";
import type { QuotaWorkerMetrics } from "./metrics";

const MARKER_MS = 35 * 86_400_000;

export interface WebhookDeliveryOptions {
  /**
   * A connection that waits out a Redis restart (`forBullMQ`: no retry limit): the claim and
   * the sent marker must be written even if Redis blinks right after the endpoint answered.
   */
  redis: Redis;
  keys: RedisKeys;
  customers: CustomerRegistry;
  logger: Logger;
  metrics: QuotaWorkerMetrics;
  timeoutMs: number;
  /** Wall clock for the signature timestamp (receivers compare it with theirs). */
  wallClock?: () => number;
}

export type DeliveryOutcome = "delivered" | "already_delivered" | "in_doubt" | "endpoint_removed";

/**
 * Delivers one threshold event to one endpoint, signed with the endpoint's secret (read now,
 * never queued): `Keymeter-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, t + "." + body)>`.
 *
 * Sent at most once per (event, endpoint): an attempt first claims the delivery in Redis,
 * then POSTs. A non-2xx answer, a timeout or a refused connection is a known failure: the
 * claim is released and BullMQ retries with exponential back-off. A 2xx writes the sent
 * marker. A worker killed mid-POST leaves the claim without an outcome; the retried
 * (stalled) job then does not send again (the endpoint may have it already) and reports
 * the delivery as in doubt (log line and `quota_webhook_in_doubt_total`).
 */
export class WebhookDelivery {
  private readonly wallClock: () => number;

  constructor(private readonly options: WebhookDeliveryOptions) {
    this.wallClock = options.wallClock ?? Date.now;
  }

  async deliver(job: WebhookDeliveryJob): Promise<DeliveryOutcome> {
    const { redis, keys, customers, logger, metrics } = this.options;
    const deliveryId = `${job.event.id}.${job.webhook_id}`;
    const ids = { customer_id: job.customer_id, webhook_id: job.webhook_id, event_id: job.event.id };
    if ((await redis.exists(keys.webhookSent(deliveryId))) === 1) return "already_delivered";
    const customer = await customers.get(job.customer_id);
    const endpoint = customer?.webhooks.find((hook) => hook.id === job.webhook_id);
    if (!endpoint) {
      logger.info(ids, "webhook endpoint removed; not sent");
      return "endpoint_removed";
    }
    const claim = keys.webhookClaim(deliveryId);
    if ((await redis.set(claim, String(this.wallClock()), "PX", MARKER_MS, "NX")) === null) {
      metrics.webhookInDoubt.inc();
      logger.warn(
        ids,
        "webhook attempt interrupted mid-send earlier (worker killed); not resent, the endpoint may have it",
      );
      return "in_doubt";
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
      if (status >= 200 && status < 300) {
        // First thing after a 2xx: the window in which a crash leaves the outcome unknown stays tiny.
        await redis.multi().set(keys.webhookSent(deliveryId), "1", "PX", MARKER_MS).del(claim).exec();
      }
      await response.body?.cancel();
    } catch (error) {
      await redis.del(claim);
      metrics.webhookFailures.inc();
      throw new Error(`webhook ${job.webhook_id} unreachable: ${(error as Error).message}`);
    }
    if (status < 200 || status >= 300) {
      await redis.del(claim);
      metrics.webhookFailures.inc();
      throw new Error(`webhook ${job.webhook_id} answered ${status}`);
    }
    metrics.webhookDeliveries.inc();
    logger.info({ ...ids, status }, "threshold webhook delivered");
    return "delivered";
  }
}
