import { afterEach, describe, expect, it } from "vitest";
import { killHard } from "../support/aggregator-process";
import { BillingStack, type UsageRow } from "../support/billing-stack";
import { pollUntil } from "../support/poll";

// The billing worker's main, SIGKILLed in the middle of a sync and started again: Stripe (the
// fake) must end up holding exactly ClickHouse's month-to-date units for every customer and
// tier, with no customer missed and nothing re-sent that was accepted before the crash.

const CUSTOMERS = 240;
const BATCH = 20;
const ZONES = ["UTC", "Asia/Kolkata", "America/New_York"] as const;

let stack: BillingStack | undefined;
afterEach(async () => {
  await stack?.close();
  stack = undefined;
});

describe("billing worker: SIGKILL mid-sync", () => {
  it("resumes: every customer and tier converges to ClickHouse's units exactly, nothing accepted is re-sent", async () => {
    stack = await BillingStack.start({ meterEventLatencyMs: 2 });
    const s = stack;
    const now = s.now();
    const zoneOf = (i: number) => ZONES[i % ZONES.length] ?? "UTC";
    const ids = Array.from({ length: CUSTOMERS }, (_, i) => `cus_crash_${String(i).padStart(4, "0")}`);
    const stripeIds = new Map<string, string>();
    for (const zone of ZONES) {
      const ofZone = ids.filter((_, i) => zoneOf(i) === zone);
      for (const [id, stripeId] of await s.linkedCustomers(ofZone, zone)) stripeIds.set(id, stripeId);
    }
    // Usage inside every zone's current month; a third of the customers moved from pro to
    // enterprise mid-month (same key, events carry the tier they were used under).
    const from = Math.max(...ZONES.map((zone) => s.periodOf(now, zone).start));
    const rows: UsageRow[] = [];
    ids.forEach((customer, i) => {
      for (let n = 0; n < 4; n++) {
        const at = from + Math.floor(((now - 60_000 - from) * (n + 1)) / 5);
        rows.push({ customer, tier: i % 3 === 0 && n >= 2 ? "enterprise" : "pro", units: 1 + ((i * 7 + n) % 13), at });
      }
    });
    // A free-tier customer: never billed.
    rows.push({ customer: "cus_free_only", tier: "free", units: 5, at: now - 120_000 });
    await s.insertUsage(rows);

    const truth = async () => {
      const pairs = new Map<string, number>();
      for (const zone of ZONES) {
        const inZone = new Set(ids.filter((_, i) => zoneOf(i) === zone));
        for (const [pair, units] of await s.unitsByCustomer(s.periodOf(now, zone))) {
          if (inZone.has(pair.split(" ")[0] ?? "")) pairs.set(pair, units);
        }
      }
      return pairs;
    };
    const expected = await truth();
    const stripeView = () => {
      const pairs = new Map<string, number>();
      for (const [i, id] of ids.entries()) {
        for (const tier of ["pro", "enterprise"]) {
          const total = s.stripeTotal(stripeIds.get(id) ?? "", tier, s.periodOf(now, zoneOf(i)));
          if (total !== 0) pairs.set(`${id} ${tier}`, total);
        }
      }
      return pairs;
    };
    const meterEvents = () => s.fake.meterEvents.length;

    const env = {
      BILLING_SYNC_BATCH: String(BATCH),
      // Slow enough that the kill lands mid-run: 300 events at 150/s take 2 s.
      STRIPE_METER_EVENTS_PER_S: "150",
      BILLING_SYNC_EVERY_MS: "1500",
      BILLING_CLOSE_EVERY_MS: "3600000",
    };
    const first = s.spawnWorker(env);
    await pollUntil(() => meterEvents() >= 100, {
      timeoutMs: 30_000,
      intervalMs: 2,
      what: "the first 100 meter events",
    });
    await killHard(first);
    const beforeCrash = meterEvents();
    expect(beforeCrash).toBeLessThan(expected.size); // the crash really was mid-sync

    const second = s.spawnWorker(env);
    await pollUntil(
      () => {
        const view = stripeView();
        return view.size === expected.size && [...expected].every(([pair, units]) => view.get(pair) === units);
      },
      { timeoutMs: 60_000, intervalMs: 200, what: "Stripe's totals to equal ClickHouse's" },
    );
    // Exactly ClickHouse's pairs and values: nobody missed, nobody extra (no free tier, no stray customer).
    expect(stripeView()).toEqual(expected);
    // Nothing accepted before the crash was sent again, except what was in flight at the kill:
    // per tier, the batch being recorded and the batch being sent (two tiers run at once).
    expect(meterEvents()).toBeLessThanOrEqual(expected.size + 2 * 2 * BATCH);

    // A re-run after new usage converges again, and only the changed customers are sent.
    const sentBefore = meterEvents();
    const changed = ids.slice(0, 5);
    await s.insertUsage(changed.map((customer) => ({ customer, tier: "pro", units: 1000, at: s.now() - 30_000 })));
    const grown = await truth();
    await pollUntil(
      () => {
        const view = stripeView();
        return [...grown].every(([pair, units]) => view.get(pair) === units);
      },
      {
        timeoutMs: 30_000,
        intervalMs: 200,
        what: "the re-run to send the new totals",
      },
    );
    expect(meterEvents() - sentBefore).toBe(changed.length);

    // The audit table holds an accepted row for every pair.
    const audit = await s.clickhouse.query({
      query:
        "SELECT count(DISTINCT (customer_id, tier)) AS pairs FROM billing_sync_log WHERE kind = 'sync' AND outcome = 'accepted'",
      format: "JSONEachRow",
    });
    expect(Number((await audit.json<{ pairs: string }>())[0]?.pairs)).toBe(expected.size);
    await killHard(second);
  }, 120_000);
});
