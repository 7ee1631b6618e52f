export * from "./billing-provider";
export * from "./dry-run-billing";
export * from "./meter-event-limiter";
export * from "./meter-total";
export * from "./provider-config";
export * from "./stripe-billing";
export * from "./stripe-retry";
export * from "./tier-billing";
