import type { UsageEventInput } from "../usage-event";

/**
 * Where gateways hand usage events. `emit` never blocks the request path and never throws:
 * the Kafka emitter buffers, spools to disk when the broker is down, and reports drops.
 */
export interface UsageEventSink {
  emit(event: UsageEventInput): void;
  /** Resolves once everything emitted so far is acknowledged by Kafka (or spooled). */
  flush(): Promise<void>;
}
