import { parseUsageEvent } from "@keymeter/shared/usage";
import { describe, expect, it } from "vitest";
import { eventDateTime, usageRowJson } from "./usage-rows";

describe("usageRowJson", () => {
  it("writes a row ClickHouse can read, escaping strings", () => {
    const parsed = parseUsageEvent({
      specversion: "1.0",
      id: 'id with "quotes" and \\ backslash',
      source: "gw\n1",
      type: "api.request",
      subject: "key_abcdefgh",
      time: "2026-10-31T23:59:59.999Z",
      data: { method: "GET", route: "/v1/é/:id", status: 200, latency_ms: 1.25, customer_id: "cus_1", tier: "pro" },
    });
    if (!parsed.ok) throw new Error(parsed.error);
    const row = JSON.parse(
      usageRowJson(parsed.event, { topic: "usage.events", partition: 3, offset: "42" }, "2026-12-01 00:00:01"),
    );
    expect(row).toEqual({
      event_id: 'id with "quotes" and \\ backslash',
      source: "gw\n1",
      key_id: "key_abcdefgh",
      customer_id: "cus_1",
      tier: "pro",
      event_time: "2026-10-31 23:59:59",
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
      ingested_at: "2026-12-01 00:00:01",
    });
  });

  it("converts event times with an offset to UTC", () => {
    expect(eventDateTime("2026-12-01T01:30:00+02:00")).toBe("2026-11-30 23:30:00");
    expect(eventDateTime("2026-12-01T01:30:00.5Z")).toBe("2026-12-01 01:30:00");
  });
});
