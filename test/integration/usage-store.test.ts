import { ClickHouseUsageStore } from "@keymeter/aggregator";
import { createClickHouse } from "@keymeter/shared/stores";
import { describe, expect, it } from "vitest";
import { services, uniqueName } from "../support/services";

describe("ClickHouseUsageStore.settle (before a failed INSERT is retried)", () => {
  it("returns at once for a query ClickHouse does not run, and waits until a running one ended", async () => {
    const clickhouse = createClickHouse({
      url: services().clickhouseUrl,
      username: "default",
      password: "",
      database: "default",
    });
    try {
      const store = new ClickHouseUsageStore(clickhouse);
      let started = Date.now();
      await store.settle(uniqueName("absent"));
      expect(Date.now() - started).toBeLessThan(1_000);

      // A query that keeps running after its client gave up waiting, as a timed-out INSERT can.
      const queryId = uniqueName("running");
      const running = clickhouse
        .query({ query: "SELECT sleep(1.5)", query_id: queryId, format: "JSONEachRow" })
        .then((result) => result.json());
      await new Promise((r) => setTimeout(r, 300));
      started = Date.now();
      await store.settle(queryId);
      expect(Date.now() - started).toBeGreaterThan(800);
      const left = await clickhouse.query({
        query: `SELECT count() AS n FROM system.processes WHERE query_id = '${queryId}'`,
        format: "JSONEachRow",
      });
      expect(await left.json()).toEqual([{ n: "0" }]);
      await running;
    } finally {
      await clickhouse.close();
    }
  });
});
