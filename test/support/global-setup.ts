import type { TestProject } from "vitest/node";
import { startContainers } from "./containers";
import type { ServiceAddresses } from "./services";

/**
 * Finds the real services for the integration suite. By default they are the ones that
 * `infra/local/services.sh up` started (addresses from the environment, the script's
 * defaults otherwise). With KEYMETER_TEST_CONTAINERS=1 and a Docker engine, testcontainers
 * starts the same services instead.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let stop = async () => {};
  let addresses: ServiceAddresses;
  if (process.env.KEYMETER_TEST_CONTAINERS === "1") {
    const started = await startContainers();
    addresses = started.addresses;
    stop = started.stop;
  } else {
    addresses = fromEnvironment(process.env);
  }
  await checkReachable(addresses);
  project.provide("services", addresses);
  return stop;
}

function fromEnvironment(env: NodeJS.ProcessEnv): ServiceAddresses {
  const addresses: ServiceAddresses = {
    kafkaBrokers: (env.KAFKA_BROKERS ?? `127.0.0.1:${env.KAFKA_PORT ?? 9092}`).split(","),
    clickhouseUrl: env.CLICKHOUSE_URL ?? `http://127.0.0.1:${env.CLICKHOUSE_HTTP_PORT ?? 8123}`,
    redisUrl: env.REDIS_URL ?? `redis://127.0.0.1:${env.REDIS_PORT ?? 6379}`,
  };
  const stripe = env.STRIPE_API_BASE ?? `http://127.0.0.1:${env.STRIPE_MOCK_PORT ?? 12111}`;
  return { ...addresses, stripeApiBase: stripe };
}

async function checkReachable(addresses: ServiceAddresses): Promise<void> {
  const { connect } = await import("node:net");
  const probe = (label: string, hostPort: string) =>
    new Promise<void>((resolve, reject) => {
      const [host, port] = hostPort.split(":");
      const socket = connect({ host: host ?? "127.0.0.1", port: Number(port) });
      socket.setTimeout(2000);
      socket.once("connect", () => {
        socket.end();
        resolve();
      });
      const fail = () => {
        socket.destroy();
        reject(
          new Error(`${label} is not reachable at ${hostPort}: start it with 'npm run up' (or npm test, which does)`),
        );
      };
      socket.once("error", fail);
      socket.once("timeout", fail);
    });
  await probe("Kafka", addresses.kafkaBrokers[0] ?? "");
  await probe("ClickHouse", new URL(addresses.clickhouseUrl).host);
  await probe("Redis", new URL(addresses.redisUrl).host);
  if (addresses.stripeApiBase) {
    await probe("stripe-mock", new URL(addresses.stripeApiBase).host).catch(() => {
      // stripe-mock is optional (the Go proxy may not serve it); billing tests say when they skip.
      delete addresses.stripeApiBase;
    });
  }
}
