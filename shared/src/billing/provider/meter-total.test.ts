import { describe, expect, it } from "vitest";
import { meterTotalEvent } from "./meter-total";

const period = { start: new Date("2026-11-01T00:00:00Z"), end: new Date("2026-12-01T00:00:00Z") };
const base = { eventName: "keymeter_pro_requests", stripeCustomerId: "cus_1", period };

describe("meterTotalEvent", () => {
  it("is deterministic per reading and differs for another total or another reading time", () => {
    const reading = { ...base, total: 120, asOf: new Date("2026-11-15T10:00:00.700Z") };
    const event = meterTotalEvent(reading);
    expect(event).toEqual(meterTotalEvent({ ...reading, asOf: new Date("2026-11-15T10:00:00.100Z") }));
    expect(event.timestamp).toEqual(new Date("2026-11-15T10:00:00Z"));
    expect(event.value).toBe(120);
    expect(event.identifier).toMatch(/^kmt_[A-Za-z0-9_-]{40}$/);
    expect(meterTotalEvent({ ...reading, total: 121 }).identifier).not.toBe(event.identifier);
    expect(meterTotalEvent({ ...reading, asOf: new Date("2026-11-15T10:00:01Z") }).identifier).not.toBe(
      event.identifier,
    );
    expect(meterTotalEvent({ ...reading, stripeCustomerId: "cus_2" }).identifier).not.toBe(event.identifier);
  });

  it("keeps a month-close reading inside its period and refuses readings from before it or fractional totals", () => {
    const late = meterTotalEvent({ ...base, total: 5, asOf: new Date("2026-12-01T00:30:00Z") });
    expect(late.timestamp).toEqual(new Date("2026-11-30T23:59:59Z"));
    expect(() => meterTotalEvent({ ...base, total: 5, asOf: new Date("2026-10-31T23:59:59Z") })).toThrow(
      "before its period started",
    );
    expect(() => meterTotalEvent({ ...base, total: 1.5, asOf: new Date("2026-11-02T00:00:00Z") })).toThrow(
      "whole number",
    );
  });
});
