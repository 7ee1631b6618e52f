import { readFileSync } from "node:fs";
import { join } from "node:path";
import { GenericContainer, type StartedTestContainer, Wait } from "testcontainers";
import { parse } from "yaml";
import type { ServiceAddresses } from "./services";

/** The image docker-compose.yml pins for a service: one place for the versions the suite covers. */
export function composeImage(service: string): string {
  const compose = parse(readFileSync(join(import.meta.dirname, "../../docker-compose.yml"), "utf8")) as {
    services: Record<string, { image?: string }>;
  };
  const image = compose.services[service]?.image;
  if (!image) throw new Error(`docker-compose.yml has no image for ${service}`);
  return image;
}

/**
 * The same services as infra/local/services.sh, in containers, for machines with a Docker
 * engine (KEYMETER_TEST_CONTAINERS=1). Kafka's advertised listener must match the host
 * port, so it is mapped to the same fixed port.
 */
export async function startContainers(): Promise<{ addresses: ServiceAddresses; stop: () => Promise<void> }> {
  const kafkaPort = Number(process.env.KAFKA_PORT ?? 9092);
  const started: StartedTestContainer[] = [];
  try {
    const redis = await new GenericContainer(composeImage("redis"))
      .withCommand(["redis-server", "--appendonly", "yes", "--maxmemory-policy", "noeviction"])
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage("Ready to accept connections"))
      .start();
    started.push(redis);
    const clickhouse = await new GenericContainer(composeImage("clickhouse"))
      .withExposedPorts(8123)
      .withEnvironment({ CLICKHOUSE_SKIP_USER_SETUP: "1" })
      .withWaitStrategy(Wait.forHttp("/ping", 8123))
      .start();
    started.push(clickhouse);
    const kafka = await new GenericContainer(composeImage("kafka"))
      .withExposedPorts({ container: 9092, host: kafkaPort })
      .withEnvironment({
        KAFKA_NODE_ID: "1",
        KAFKA_PROCESS_ROLES: "broker,controller",
        KAFKA_LISTENERS: "PLAINTEXT://:9092,CONTROLLER://:9093",
        KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${kafkaPort}`,
        KAFKA_CONTROLLER_LISTENER_NAMES: "CONTROLLER",
        KAFKA_CONTROLLER_QUORUM_VOTERS: "1@localhost:9093",
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: "1",
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: "0",
        KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false",
      })
      .withWaitStrategy(Wait.forLogMessage("Kafka Server started"))
      .start();
    started.push(kafka);
    const stripe = await new GenericContainer(composeImage("stripe-mock")).withExposedPorts(12111).start();
    started.push(stripe);
    return {
      addresses: {
        kafkaBrokers: [`127.0.0.1:${kafkaPort}`],
        clickhouseUrl: `http://${clickhouse.getHost()}:${clickhouse.getMappedPort(8123)}`,
        redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
        stripeApiBase: `http://${stripe.getHost()}:${stripe.getMappedPort(12111)}`,
      },
      stop: async () => {
        await Promise.all(started.map((c) => c.stop()));
      },
    };
  } catch (error) {
    await Promise.all(started.map((c) => c.stop()));
    throw error;
  }
}
