export { buildIngestApp, type IngestAppOptions } from "./app";
export { ingestConfigSchema } from "./config";
export { type EventPublisher, KafkaEventPublisher } from "./event-publisher";
export { kongLogToEvent, templateRoute } from "./kong-log";
