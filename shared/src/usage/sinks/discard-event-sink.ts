import type { UsageEventInput } from "../usage-event";
import type { UsageEventSink } from "./event-sink";

/** Drops every event: a gateway that only authenticates and limits. */
export class DiscardEventSink implements UsageEventSink {
  emit(_event: UsageEventInput): void {}
  async flush(): Promise<void> {}
}
