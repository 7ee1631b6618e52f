import { createLogger, parseConfig, runService } from "@keymeter/shared";
import { gatewayConfigSchema } from "./config";
import { DiscardEventSink } from "./discard-event-sink";
import { startGateway } from "./service";
import { StreamEventSink } from "./stream-event-sink";

runService("gateway", async () => {
  const config = parseConfig(gatewayConfigSchema);
  const logger = createLogger("gateway", config.LOG_LEVEL);
  const sink = config.EVENT_SINK === "stdout" ? new StreamEventSink(process.stdout) : new DiscardEventSink();
  const running = await startGateway(config, sink, logger);
  return running.stop;
});
