export { BillingWorker, type BillingWorkerOptions } from "./billing-worker";
export { type BillingWorkerConfig, billingWorkerConfigSchema } from "./config";
export { BillingWorkerMetrics } from "./metrics";
export { type CloseResult, MonthClose } from "./month-close";
export { StripeCustomers } from "./stripe-customers";
export { type BillingDeps, type SyncResult, TierSync } from "./tier-sync";
