import { parseUsageEvent } from "@keymeter/shared/usage";
import { describe, expect, it } from "vitest";
import { InsertCombiner } from "./insert-combiner";
import { readUsageRows, UsageRows } from "./usage-rows";
import type { UsageStore } from "./usage-store";

function rowsOf(partition: number, count: number): UsageRows {
  const rows = new UsageRows();
  for (let i = 0; i < count; i++) {
    const parsed = parseUsageEvent({
      specversion: "1.0",
      id: `p${partition}-${i}`,
      source: "gw",
      type: "api.request",
      subject: "key_abcdefgh",
      time: "2026-11-01T00:00:00Z",
      data: { method: "GET", route: "/v1/x", status: 200, latency_ms: 1 },
    });
    if (!parsed.ok) throw new Error(parsed.error);
    rows.append(parsed.event, parsed.timeMs, { topic: "t", partition, offset: i }, 0);
  }
  return rows;
}

/** A store that records each INSERT (its query id and event ids) and fails when told to. */
function recordingStore() {
  const inserts: Array<{ queryId: string; ids: string[] }> = [];
  let failNext = false;
  const store: UsageStore = {
    async insert(rows, queryId) {
      if (failNext) {
        failNext = false;
        throw new Error("ClickHouse timed out (test)");
      }
      inserts.push({ queryId, ids: readUsageRows(rows.bytes()).map((row) => String(row.event_id)) });
    },
  };
  return { store, inserts, failNextInsert: () => (failNext = true) };
}

describe("InsertCombiner", () => {
  it("sends the batches in hand in one INSERT once all of them joined, rows and order kept", async () => {
    const { store, inserts } = recordingStore();
    const combiner = new InsertCombiner(store, { maxRows: 1_000, lingerMs: 10_000, batchesInHand: () => 3 });
    const done = [
      combiner.insert(rowsOf(0, 2), "t-0-0-1"),
      combiner.insert(rowsOf(1, 1), "t-1-0-0"),
      combiner.insert(rowsOf(2, 3), "t-2-0-2"),
    ];
    await Promise.all(done);
    expect(inserts).toEqual([
      { queryId: "t-0-0-1+t-1-0-0+t-2-0-2", ids: ["p0-0", "p0-1", "p1-0", "p2-0", "p2-1", "p2-2"] },
    ]);
  });

  it("does not wait when the batch is the only one in hand, or when enough rows are there", async () => {
    const { store, inserts } = recordingStore();
    let inHand = 1;
    const combiner = new InsertCombiner(store, { maxRows: 4, lingerMs: 10_000, batchesInHand: () => inHand });
    await combiner.insert(rowsOf(0, 1), "alone");
    inHand = 3;
    await Promise.all([combiner.insert(rowsOf(1, 2), "a"), combiner.insert(rowsOf(2, 2), "b")]);
    expect(inserts.map((insert) => insert.queryId)).toEqual(["alone", "a+b"]);
  });

  it("sends what joined after the linger when a batch in hand is slow to come", async () => {
    const { store, inserts } = recordingStore();
    const combiner = new InsertCombiner(store, { maxRows: 1_000, lingerMs: 30, batchesInHand: () => 2 });
    const started = Date.now();
    await combiner.insert(rowsOf(0, 1), "first");
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
    expect(inserts.map((insert) => insert.queryId)).toEqual(["first"]);
  });

  it("fails every batch of a failed INSERT with its query id (for the retry to wait out), and lets each retry alone", async () => {
    const { store, inserts, failNextInsert } = recordingStore();
    const combiner = new InsertCombiner(store, { maxRows: 1_000, lingerMs: 10_000, batchesInHand: () => 2 });
    failNextInsert();
    const results = await Promise.allSettled([combiner.insert(rowsOf(0, 1), "a"), combiner.insert(rowsOf(1, 1), "b")]);
    expect(results).toEqual([
      { status: "rejected", reason: expect.objectContaining({ queryId: "a+b" }) },
      { status: "rejected", reason: expect.objectContaining({ queryId: "a+b" }) },
    ]);
    await combiner.insert(rowsOf(0, 1), "a", false);
    expect(inserts).toEqual([{ queryId: "a", ids: ["p0-0"] }]);
  });
});
