import { createLogger, parseConfig, runService } from "@keymeter/shared/runtime";
import { createKafka, topicNames } from "@keymeter/shared/stores";
import { KafkaEmitter, type UsageEventSink } from "@keymeter/shared/usage";
import { type GatewayConfig, gatewayConfigSchema } from "./config";
import { DiscardEventSink } from "./discard-event-sink";
import { startGateway } from "./service";
import { StreamEventSink } from "./stream-event-sink";

async function eventSink(
  config: GatewayConfig,
  logger: ReturnType<typeof createLogger>,
): Promise<{ sink: UsageEventSink; close(): Promise<void> }> {
  if (config.EVENT_SINK === "kafka") {
    const emitter = new KafkaEmitter({
      kafka: createKafka(config.KAFKA_BROKERS, `keymeter-gateway-${config.GATEWAY_ID}`, logger),
      topic: topicNames(config.KAFKA_TOPIC_PREFIX).events,
      logger,
      spoolDir: config.EMITTER_SPOOL_DIR,
      maxSpoolBytes: config.EMITTER_SPOOL_MAX_BYTES,
    });
    await emitter.start();
    return { sink: emitter, close: () => emitter.close() };
  }
  const sink = config.EVENT_SINK === "stdout" ? new StreamEventSink(process.stdout) : new DiscardEventSink();
  return { sink, close: () => sink.flush() };
}

runService("gateway", async () => {
  const config = parseConfig(gatewayConfigSchema);
  const logger = createLogger("gateway", config.LOG_LEVEL);
  const events = await eventSink(config, logger);
  const running = await startGateway(config, events.sink, logger);
  return async () => {
    await running.stop();
    // After the last request: everything emitted reaches Kafka or the spool.
    await events.close();
  };
});
