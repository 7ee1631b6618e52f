import { parseUsageEvent, type UsageEvent, type UsageEventInput, type UsageEventSink } from "@keymeter/shared/usage";

/**
 * An in-memory UsageEventSink for tests: keeps every event, validated against the event
 * schema (an invalid event is kept in `invalid` with the reason, never thrown: `emit` must
 * not throw on the request path).
 */
export class MemorySink implements UsageEventSink {
  readonly events: UsageEvent[] = [];
  readonly invalid: string[] = [];

  /** `forward` also gets every event (a Kafka emitter, for tests that run the whole pipeline). */
  constructor(private readonly forward?: UsageEventSink) {}

  emit(event: UsageEventInput): void {
    const parsed = parseUsageEvent(event);
    if (parsed.ok) this.events.push(parsed.event);
    else this.invalid.push(parsed.error);
    this.forward?.emit(event);
  }

  async flush(): Promise<void> {
    await this.forward?.flush();
  }

  forKey(keyId: string): UsageEvent[] {
    return this.events.filter((event) => event.subject === keyId);
  }
}
