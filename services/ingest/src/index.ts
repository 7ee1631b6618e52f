export { buildIngestApp, type IngestAppOptions } from "./app";
export { ingestConfigSchema } from "./config";
export { kongLogToEvent } from "./kong-log";
