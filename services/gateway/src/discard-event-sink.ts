import type { UsageEventInput, UsageEventSink } from "@keymeter/shared/usage";

/** Drops every event: a gateway that only authenticates and limits. */
export class DiscardEventSink implements UsageEventSink {
  emit(_event: UsageEventInput): void {}
  async flush(): Promise<void> {}
}
