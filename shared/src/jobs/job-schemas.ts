import { z } from "zod";

const keyId = z.string().regex(/^key_[A-Za-z0-9]{8,64}$/, "expected a key id");

/** Why a check was asked for (logged and counted; the check itself is the same). */
export const CHECK_REASONS = ["usage", "key_changed", "override_changed", "customer_changed", "manual"] as const;

/** `quota-checks` job data. */
export const quotaCheckJobSchema = z
  .object({
    key_id: keyId,
    reason: z.enum(CHECK_REASONS),
  })
  .strict();
export type QuotaCheckJob = z.infer<typeof quotaCheckJobSchema>;
export type CheckReason = (typeof CHECK_REASONS)[number];

/** `quota-sweeps` job data. */
export const quotaSweepJobSchema = z
  .object({ reason: z.enum(["scheduled", "startup", "manual"]).default("scheduled") })
  .strict();
export type QuotaSweepJob = z.infer<typeof quotaSweepJobSchema>;

/** The body of a threshold webhook, as sent (signed) to the customer's endpoints. */
export const thresholdEventSchema = z
  .object({
    /** Stable per key, threshold and period: receivers deduplicate on it. */
    id: z.string().regex(/^evt_[a-f0-9]{32}$/),
    type: z.literal("quota.threshold_reached"),
    created_at: z.iso.datetime({ offset: true }),
    data: z
      .object({
        customer_id: z.string(),
        key_id: keyId,
        threshold_percent: z.number().int().positive().max(1000),
        used: z.number().int().nonnegative(),
        quota: z.number().int().positive(),
        overage_policy: z.enum(["block", "bill"]),
        period: z.object({ id: z.string(), start: z.string(), end: z.string() }).strict(),
      })
      .strict(),
  })
  .strict();
export type ThresholdEvent = z.infer<typeof thresholdEventSchema>;

/** `quota-webhooks` job data: one event to one endpoint. The secret is read at delivery time, never queued. */
export const webhookDeliveryJobSchema = z
  .object({
    customer_id: z.string().min(1),
    webhook_id: z.string().regex(/^wh_[A-Za-z0-9]{16}$/),
    event: thresholdEventSchema,
  })
  .strict();
export type WebhookDeliveryJob = z.infer<typeof webhookDeliveryJobSchema>;
