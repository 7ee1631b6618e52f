export * from "./emitter/disk-spool";
export * from "./emitter/kafka-emitter";
export * from "./event-batching";
export * from "./event-sink";
export * from "./usage-event";
