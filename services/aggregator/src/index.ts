export { type AfterInsertHook, Aggregator, type AggregatorOptions, type StoredBatch } from "./aggregator";
export { type AggregatorStores, aggregatorOptions, connectAggregatorStores } from "./assemble";
export { type AggregatorConfig, aggregatorConfigSchema } from "./config";
export { DedupWindow } from "./dedup-window";
export { AggregatorMetrics } from "./metrics";
export { lastStoredOffsetsQuery, OffsetStore } from "./offset-store";
export { QuotaHook, type QuotaHookOptions } from "./quota-hook";
export { usageRowJson } from "./usage-rows";
export { ClickHouseUsageStore, INSERT_USAGE_EVENTS, type UsageStore } from "./usage-store";
