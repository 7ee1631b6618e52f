import { DryRunBillingProvider } from "@keymeter/shared/billing/provider";
import { QUEUE_NAMES } from "@keymeter/shared/jobs";
import { Queue, QueueEvents } from "bullmq";
import { afterEach, describe, expect, it } from "vitest";
import { BillingStack } from "../support/billing-stack";
import { pollUntil } from "../support/poll";

let stack: BillingStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe("billing worker: configuration errors and the dry run", () => {
  it("fails a sync of a tier that is not billed at once, without retries (UnrecoverableError)", async () => {
    stack = await BillingStack.start();
    const s = stack;
    await s.startWorker({ syncEveryMs: 3_600_000, closeEveryMs: 3_600_000 });
    const connection = { connection: s.redisConnection(true), prefix: s.keys.bullPrefix };
    const queue = new Queue(QUEUE_NAMES.billingSync, connection);
    const events = new QueueEvents(QUEUE_NAMES.billingSync, { ...connection, connection: s.redisConnection(true) });
    try {
      await events.waitUntilReady();
      const job = await queue.add("sync", { tier: "free", reason: "manual" }, { attempts: 5, backoff: 10 });
      const failed = await pollUntil(async () => (await queue.getJob(job.id ?? ""))?.failedReason, {
        timeoutMs: 10_000,
        what: "the job to fail",
      });
      expect(failed).toContain("tier free is not a billed tier");
      const stored = await queue.getJob(job.id ?? "");
      expect(stored?.attemptsMade).toBe(1);
      expect(await stored?.getState()).toBe("failed");
    } finally {
      await events.close();
      await queue.close();
    }
  });

  it("without a Stripe key sends nothing, audits dry_run rows and stores no made-up id", async () => {
    stack = await BillingStack.start();
    const s = stack;
    await s.customers.create({ id: "cus_dry" });
    await s.insertUsage([{ customer: "cus_dry", tier: "pro", units: 12, at: Date.now() - 60_000 }]);
    const provider = new DryRunBillingProvider({ logger: s.logger });
    await s.startWorker({ provider, live: false, syncEveryMs: 3_600_000, closeEveryMs: 3_600_000 });
    await pollUntil(() => provider.sentEvents.length > 0, { timeoutMs: 10_000, what: "the dry run's meter event" });
    expect(provider.sentEvents).toEqual([expect.objectContaining({ stripeCustomerId: "dry_cus_cus_dry", value: 12 })]);
    expect(await s.customers.get("cus_dry")).toMatchObject({ stripe_customer_id: null, stripe_subscription_id: null });
    const audit = await pollUntil(
      async () => {
        const result = await s.clickhouse.query({
          query: "SELECT customer_id, value, outcome FROM billing_sync_log",
          format: "JSONEachRow",
        });
        const rows = await result.json();
        return rows.length > 0 ? rows : undefined;
      },
      { timeoutMs: 10_000, what: "the audit row" },
    );
    expect(audit).toEqual([{ customer_id: "cus_dry", value: "12", outcome: "dry_run" }]);
    expect(s.fake.requests).toEqual([]);
  });
});
