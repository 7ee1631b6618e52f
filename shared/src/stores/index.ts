export * from "./clickhouse";
export * from "./clickhouse-migrations";
export * from "./kafka";
export * from "./kafka-topics";
export * from "./redis";
export * from "./redis-keys";
