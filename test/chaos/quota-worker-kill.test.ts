import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readQuotaFlags } from "@keymeter/shared/billing";
import { afterAll, describe, expect, it } from "vitest";
import { killHard, stopGracefully } from "../support/aggregator-process";
import { IsolatedServices } from "../support/isolated-services";
import { call } from "../support/key-stack";
import { waitFor } from "../support/poll";
import { QUOTA_TIERS_JSON, QuotaStack } from "../support/quota-stack";
import { killAllQuotaWorkers, spawnQuotaWorker } from "../support/quota-worker-process";

describe("quota worker SIGKILLed and Redis restarted mid-run (private Redis)", () => {
  let isolated: IsolatedServices | undefined;
  let stack: QuotaStack | undefined;
  afterAll(async () => {
    await killAllQuotaWorkers();
    await stack?.close().catch(() => undefined);
    isolated?.destroy();
  });

  it("loses no flag and sends no webhook twice", async () => {
    isolated = await IsolatedServices.create();
    isolated.up("redis");
    const redisUrl = `redis://127.0.0.1:${isolated.env.REDIS_PORT}`;
    stack = await QuotaStack.start("quota_chaos", { redisUrl, worker: false });
    const tiersFile = join(tmpdir(), `${stack.pipeline.name}-tiers.json`);
    writeFileSync(tiersFile, JSON.stringify(QUOTA_TIERS_JSON));
    const env = {
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: stack.keyStack.prefix,
      CLICKHOUSE_URL: stack.pipeline.connection.url,
      CLICKHOUSE_DATABASE: stack.pipeline.connection.database,
      TIERS_FILE: tiersFile,
      QUOTA_SWEEP_INTERVAL_MS: "2000",
      QUOTA_WEBHOOK_BACKOFF_MS: "200",
    };
    let worker = spawnQuotaWorker(env);

    const customerId = await stack.customer();
    const keys = await Promise.all(
      Array.from({ length: 6 }, () =>
        stack?.keyStack.registry.create({ customer_id: customerId, tier: "metered", scope: "read-write" }),
      ),
    );
    const secrets = keys.flatMap((issued) => (issued ? [issued.secret] : []));
    const ids = keys.flatMap((issued) => (issued ? [issued.key.id] : []));
    const gatewayUrl = stack.gateway.url;

    // Each key sends until refused with quota_exceeded; errors (Redis away: 503) are retried.
    const refused = new Set<string>();
    let stop = false;
    const traffic = secrets.map(async (secret, i) => {
      while (!stop) {
        const response = await call(`${gatewayUrl}/v1/things/${i}`, {
          headers: { authorization: `Bearer ${secret}` },
        }).catch(() => undefined);
        if (
          response?.status === 429 &&
          (response.body as { error?: { code?: string } }).error?.code === "quota_exceeded"
        ) {
          refused.add(secret);
          await new Promise((r) => setTimeout(r, 200));
        } else {
          await new Promise((r) => setTimeout(r, 40));
        }
      }
    });

    // Kill the worker once the first webhooks were delivered (mid-run: others are pending).
    await waitFor("first webhooks", () => (stack?.receiver.received.length ?? 0) >= 1, 60_000);
    const killedAt = Date.now();
    await killHard(worker);
    worker = spawnQuotaWorker(env);
    // Restart Redis (SIGTERM: AOF flushed) while traffic and jobs are in flight.
    await waitFor("more webhooks", () => (stack?.receiver.received.length ?? 0) >= 4, 60_000);
    const restartAt = Date.now();
    isolated.down("redis");
    isolated.up("redis");
    const restartedAt = Date.now();

    await waitFor("every key refused", () => refused.size === secrets.length, 90_000);
    await waitFor("two webhooks per key", () => new Set(stack?.receiver.received.map((h) => h.id)).size === 12, 90_000);
    // Give a duplicate every chance to show up: retries of stalled jobs come after 30 s locks.
    const flags = await readQuotaFlags(stack.keyStack.redis, stack.keyStack.keys, ids);
    expect([...flags.keys()].sort()).toEqual([...ids].sort());
    await new Promise((r) => setTimeout(r, 35_000));
    stop = true;
    await Promise.all(traffic);

    const received = stack.receiver.received;
    const perId = new Map<string, number>();
    for (const hook of received) perId.set(hook.id, (perId.get(hook.id) ?? 0) + 1);
    const twice = [...perId].filter(([, n]) => n !== 1).map(([id]) => id);
    const timeline = received
      .filter((hook) => twice.includes(hook.id))
      .map(
        (hook) =>
          `${hook.id} at kill${hook.at - killedAt >= 0 ? "+" : ""}${hook.at - killedAt}ms restart${hook.at - restartAt >= 0 ? "+" : ""}${hook.at - restartAt}ms (up after ${restartedAt - restartAt}ms)`,
      );
    expect(timeline).toEqual([]);
    expect(received).toHaveLength(12);
    expect(received.every((hook) => hook.validSignature)).toBe(true);
    for (const id of ids) {
      expect(
        stack.receiver
          .forKey(id)
          .map((h) => h.event.data.threshold_percent)
          .sort(),
      ).toEqual([100, 80]);
    }
    expect((await readQuotaFlags(stack.keyStack.redis, stack.keyStack.keys, ids)).size).toBe(ids.length);
    expect(await stopGracefully(worker)).toBe(0);
  }, 300_000);
});
