import type { UsageEventInput } from "../usage-event";
import type { UsageEventSink } from "./event-sink";

/** Writes each usage event as one JSON line to a stream: local runs, debugging, log shippers. */
export class StreamEventSink implements UsageEventSink {
  constructor(private readonly stream: NodeJS.WritableStream = process.stdout) {}

  emit(event: UsageEventInput): void {
    this.stream.write(`${JSON.stringify(event)}\n`);
  }

  async flush(): Promise<void> {}
}
