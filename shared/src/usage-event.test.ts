import { describe, expect, it } from "vitest";
import { parseUsageEvent, parseUsageEventBytes } from "./usage-event";

const valid = {
  specversion: "1.0",
  id: "evt-1",
  source: "gateway-eu-1",
  type: "api.request",
  subject: "key_AbCdEf123456",
  time: "2026-11-29T10:15:30.123Z",
  data: {
    method: "GET",
    route: "/v1/users/:id",
    status: 200,
    latency_ms: 12.5,
    request_bytes: 10,
    response_bytes: 200,
  },
};

describe("parseUsageEvent", () => {
  it("accepts a CloudEvents usage event and fills defaults", () => {
    const result = parseUsageEvent(valid);
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.event.data.units).toBe(1);
      expect(result.event.data.customer_id).toBe("");
    }
  });

  it.each([
    ["data.status", { ...valid, data: { ...valid.data, status: "200" } }],
    ["time", { ...valid, time: "yesterday" }],
    ["subject", { ...valid, subject: "sk_live_this_looks_like_a_secret" }],
    ["specversion", { ...valid, specversion: "0.3" }],
    ["data.route", { ...valid, data: { ...valid.data, route: "users/42" } }],
    ["data.units", { ...valid, data: { ...valid.data, units: -1 } }],
    ["id", { ...valid, id: undefined }],
  ])("names the bad field %s", (field, event) => {
    const result = parseUsageEvent(event);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(`${field}:`);
  });

  it("rejects an impossible date that matches the RFC 3339 shape", () => {
    const result = parseUsageEvent({ ...valid, time: "2026-13-45T10:00:00Z" });
    expect(result).toMatchObject({ ok: false });
  });
});

describe("parseUsageEventBytes", () => {
  it("explains invalid JSON, a missing value and an oversized event", () => {
    expect(parseUsageEventBytes("{not json")).toMatchObject({
      ok: false,
      error: expect.stringContaining("not valid JSON"),
    });
    expect(parseUsageEventBytes(null)).toEqual({ ok: false, error: "message has no value" });
    const huge = JSON.stringify({ ...valid, id: "x".repeat(20_000) });
    expect(parseUsageEventBytes(huge)).toMatchObject({ ok: false, error: expect.stringContaining("byte limit") });
  });

  it("parses a valid event from bytes", () => {
    expect(parseUsageEventBytes(Buffer.from(JSON.stringify(valid)))).toMatchObject({ ok: true });
  });
});
