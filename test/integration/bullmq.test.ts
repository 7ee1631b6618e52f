import { createRedis } from "@keymeter/shared/stores";
import { Queue, QueueEvents, Worker } from "bullmq";
import { afterAll, describe, expect, it } from "vitest";
import { services, uniqueName } from "../support/services";

describe("BullMQ on the real Redis", () => {
  const connection = createRedis(services().redisUrl, { forBullMQ: true });
  afterAll(() => connection.quit());

  it("runs a job and hands its result back", async () => {
    const name = uniqueName("queue");
    const queue = new Queue(name, { connection });
    const events = new QueueEvents(name, { connection: createRedis(services().redisUrl, { forBullMQ: true }) });
    const worker = new Worker<{ keyId: string; used: number }, { overQuota: boolean }>(
      name,
      async (job) => ({ overQuota: job.data.used > 10_000 }),
      { connection: createRedis(services().redisUrl, { forBullMQ: true }) },
    );
    try {
      await events.waitUntilReady();
      const job = await queue.add("quota-check", { keyId: "key_abcdefgh", used: 10_001 });
      expect(await job.waitUntilFinished(events, 10_000)).toEqual({ overQuota: true });
    } finally {
      await worker.close();
      await events.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});
