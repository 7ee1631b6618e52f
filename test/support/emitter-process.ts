/**
 * A process that emits events through a KafkaEmitter and then waits to be killed, for
 * "a restarted process replays what a crashed one left". Environment: KAFKA_BROKERS, TOPIC,
 * SPOOL_DIR, COUNT (events, ids `<ID_PREFIX>-<n>`), ID_PREFIX, SEND_TIMEOUT_MS. After
 * flush() it prints `FLUSHED <stats JSON>` on stdout.
 */
import { createLogger } from "@keymeter/shared/runtime";
import { createKafka } from "@keymeter/shared/stores";
import { KafkaEmitter } from "@keymeter/shared/usage";
import { TEST_KEYS } from "./partition-keys";

const env = (name: string) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
};
const logger = createLogger("emitter-process", "silent");
const emitter = new KafkaEmitter({
  kafka: createKafka(env("KAFKA_BROKERS").split(","), "emitter-process", logger),
  topic: env("TOPIC"),
  logger,
  spoolDir: env("SPOOL_DIR"),
  sendTimeoutMs: Number(env("SEND_TIMEOUT_MS")),
});
await emitter.start();
const count = Number(env("COUNT"));
for (let n = 0; n < count; n++) {
  emitter.emit({
    specversion: "1.0",
    id: `${env("ID_PREFIX")}-${n}`,
    source: "emitter-process",
    type: "api.request",
    subject: TEST_KEYS[n % TEST_KEYS.length] ?? "key_spread000000",
    time: new Date().toISOString(),
    data: { method: "GET", route: "/v1/x", status: 200, latency_ms: 1 },
  });
}
await emitter.flush();
process.stdout.write(`FLUSHED ${JSON.stringify(emitter.stats)}\n`);
// Alive until the test SIGKILLs it: a crash, not a close().
setInterval(() => undefined, 60_000);
