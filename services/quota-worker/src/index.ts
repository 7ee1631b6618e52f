export { type QuotaWorkerConfig, quotaWorkerConfigSchema } from "./config";
export { QuotaWorkerMetrics } from "./metrics";
export { type FlagChange, QuotaEnforcer, type SweepResult } from "./quota-enforcer";
export { QuotaWorker, type QuotaWorkerOptions } from "./quota-worker";
export { type ThresholdCrossing, ThresholdWebhooks, thresholdEvent } from "./threshold-webhooks";
export { type DeliveryOutcome, WebhookDelivery } from "./webhook-delivery";
