import { createLogger, parseConfig, runService } from "@keymeter/shared/runtime";
import { createKafka, topicNames } from "@keymeter/shared/stores";
import { openEventSink } from "@keymeter/shared/usage";
import { gatewayConfigSchema } from "./config";
import { startGateway } from "./service";

runService("gateway", async () => {
  const config = parseConfig(gatewayConfigSchema);
  const logger = createLogger("gateway", config.LOG_LEVEL);
  const events = await openEventSink({
    kind: config.EVENT_SINK,
    kafka: () => createKafka(config.KAFKA_BROKERS, `keymeter-gateway-${config.GATEWAY_ID}`, logger),
    topic: topicNames(config.KAFKA_TOPIC_PREFIX).events,
    spoolDir: config.EMITTER_SPOOL_DIR,
    maxSpoolBytes: config.EMITTER_SPOOL_MAX_BYTES,
    logger,
  });
  const running = await startGateway(config, events.sink, logger);
  return async () => {
    await running.stop();
    // After the last request: everything emitted reaches Kafka or the spool.
    await events.close();
  };
});
