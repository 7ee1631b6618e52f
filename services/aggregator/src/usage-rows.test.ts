import { parseUsageEvent } from "@keymeter/shared/usage";
import { describe, expect, it } from "vitest";
import { readUsageRows, UsageRows } from "./usage-rows";

const event = (overrides: Record<string, unknown> = {}, data: Record<string, unknown> = {}) => {
  const parsed = parseUsageEvent({
    specversion: "1.0",
    id: "evt-1",
    source: "gw-1",
    type: "api.request",
    subject: "key_abcdefgh",
    time: "2026-10-31T23:59:59.999Z",
    ...overrides,
    data: {
      method: "GET",
      route: "/v1/x/:id",
      status: 200,
      latency_ms: 1.25,
      customer_id: "cus_1",
      tier: "pro",
      ...data,
    },
  });
  if (!parsed.ok) throw new Error(parsed.error);
  return parsed.event;
};

describe("UsageRows", () => {
  it("writes RowBinary rows that read back as the events, any text and number", () => {
    const rows = new UsageRows();
    const long = `/v1/${"é".repeat(60)}/${"x".repeat(150)}/:id`;
    const first = event({ id: 'id with "quotes" and \\ backslash', source: "gw\n1" }, { route: "/v1/é/:id" });
    rows.append(first, Date.parse(first.time), { topic: "usage.events", partition: 3, offset: 42 }, 1_764_547_201);
    const second = event(
      { time: "2026-11-01T01:30:00+02:00" },
      {
        route: long,
        request_bytes: 2 ** 40 + 3,
        response_bytes: 0,
        units: 1_000_000_000,
        status: 599,
        latency_ms: 3_600_000,
      },
    );
    rows.append(second, Date.parse(second.time), { topic: "t", partition: 4_000_000_000, offset: 2 ** 52 }, 0);
    expect(rows.count).toBe(2);
    expect(rows.lastOffset).toBe(2 ** 52);
    expect(readUsageRows(rows.bytes())).toEqual([
      {
        event_id: 'id with "quotes" and \\ backslash',
        source: "gw\n1",
        key_id: "key_abcdefgh",
        customer_id: "cus_1",
        tier: "pro",
        event_time: Date.parse("2026-10-31T23:59:59Z") / 1000,
        method: "GET",
        route: "/v1/é/:id",
        status: 200,
        latency_ms: 1.25,
        request_bytes: 0,
        response_bytes: 0,
        units: 1,
        kafka_topic: "usage.events",
        kafka_partition: 3,
        kafka_offset: 42,
        ingested_at: 1_764_547_201,
      },
      expect.objectContaining({
        event_time: Date.parse("2026-10-31T23:30:00Z") / 1000,
        route: long,
        status: 599,
        latency_ms: 3_600_000,
        request_bytes: 2 ** 40 + 3,
        units: 1_000_000_000,
        kafka_partition: 4_000_000_000,
        kafka_offset: 2 ** 52,
        ingested_at: 0,
      }),
    ]);
  });

  it("keeps only the rows after an offset, for a retry after a partly applied insert", () => {
    const rows = new UsageRows();
    for (const offset of [5, 5, 6, 7, 7]) {
      const e = event({ id: `evt-${offset}-${rows.count}` });
      rows.append(e, Date.parse(e.time), { topic: "t", partition: 0, offset }, 1);
    }
    const rest = rows.after(5);
    expect(rest.count).toBe(3);
    expect(readUsageRows(rest.bytes()).map((row) => row.event_id)).toEqual(["evt-6-2", "evt-7-3", "evt-7-4"]);
    expect(rows.after(7).count).toBe(0);
    expect(rows.after(-1).bytes()).toEqual(rows.bytes());
  });
});
