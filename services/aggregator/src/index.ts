export { type AfterInsertHook, Aggregator, type AggregatorOptions, type StoredBatch } from "./aggregator";
export { type AggregatorConfig, aggregatorConfigSchema } from "./config";
export { DedupWindow } from "./dedup-window";
export { AggregatorMetrics } from "./metrics";
export { ClickHouseUsageStore, type UsageStore } from "./usage-store";
