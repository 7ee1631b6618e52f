export * from "./billing-jobs";
export * from "./job-schemas";
export * from "./job-worker";
export * from "./queues";
export * from "./quota-jobs";
