import { describe, expect, it } from "vitest";
import { nextPeriod, periodById, periodOf, previousPeriod } from "./periods";
import { canonicalTimeZone, timeZoneSchema } from "./time-zone";

const iso = (ms: number) => new Date(ms).toISOString();
const at = (text: string) => Date.parse(text);

function expectPeriod(instant: string, zone: string, id: string, start: string, end: string) {
  const period = periodOf(at(instant), zone);
  expect({ id: period.id, start: iso(period.start), end: iso(period.end) }).toEqual({ id, start, end });
}

describe("periodOf", () => {
  it("is the UTC calendar month for UTC", () => {
    expectPeriod("2026-11-29T10:15:30.123Z", "UTC", "2026-11", "2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z");
    expectPeriod("2026-12-31T23:59:59.999Z", "UTC", "2026-12", "2026-12-01T00:00:00.000Z", "2027-01-01T00:00:00.000Z");
    expectPeriod("2027-01-01T00:00:00.000Z", "UTC", "2027-01", "2027-01-01T00:00:00.000Z", "2027-02-01T00:00:00.000Z");
  });

  it("follows DST: New York's November starts in EDT and ends in EST", () => {
    expectPeriod(
      "2026-11-15T12:00:00Z",
      "America/New_York",
      "2026-11",
      "2026-11-01T04:00:00.000Z",
      "2026-12-01T05:00:00.000Z",
    );
    // 03:59Z on Nov 1 is still October 31 in New York.
    expect(periodOf(at("2026-11-01T03:59:59.999Z"), "America/New_York").id).toBe("2026-10");
    expect(periodOf(at("2026-11-01T04:00:00.000Z"), "America/New_York").id).toBe("2026-11");
  });

  it("follows DST in Europe: London's April starts at 23:00Z on March 31", () => {
    expectPeriod(
      "2026-04-10T00:00:00Z",
      "Europe/London",
      "2026-04",
      "2026-03-31T23:00:00.000Z",
      "2026-04-30T23:00:00.000Z",
    );
    expectPeriod(
      "2026-03-10T00:00:00Z",
      "Europe/London",
      "2026-03",
      "2026-03-01T00:00:00.000Z",
      "2026-03-31T23:00:00.000Z",
    );
  });

  it("is exact for a half-hour zone (Asia/Kolkata, +05:30)", () => {
    expectPeriod(
      "2026-11-01T00:00:00Z",
      "Asia/Kolkata",
      "2026-11",
      "2026-10-31T18:30:00.000Z",
      "2026-11-30T18:30:00.000Z",
    );
    expect(periodOf(at("2026-10-31T18:29:59.999Z"), "Asia/Kolkata").id).toBe("2026-10");
  });

  it("is exact for a 45-minute zone with DST (Pacific/Chatham, +12:45 / +13:45)", () => {
    // Chatham is on daylight time (+13:45) from late September to early April.
    expectPeriod(
      "2026-11-10T00:00:00Z",
      "Pacific/Chatham",
      "2026-11",
      "2026-10-31T10:15:00.000Z",
      "2026-11-30T10:15:00.000Z",
    );
    // April begins in daylight time (+13:45) and May in standard time (+12:45).
    expectPeriod(
      "2026-04-15T00:00:00Z",
      "Pacific/Chatham",
      "2026-04",
      "2026-03-31T10:15:00.000Z",
      "2026-04-30T11:15:00.000Z",
    );
  });

  it("starts a month at the transition when local midnight on the 1st does not exist (Asuncion, 2023-10-01)", () => {
    // Paraguay moved its clocks from 00:00 to 01:00 on 2023-10-01: the month begins at 01:00 -03.
    expectPeriod(
      "2023-10-15T00:00:00Z",
      "America/Asuncion",
      "2023-10",
      "2023-10-01T04:00:00.000Z",
      "2023-11-01T03:00:00.000Z",
    );
    expect(periodOf(at("2023-10-01T03:59:59.999Z"), "America/Asuncion").id).toBe("2023-09");
  });

  it("periods tile time: each ends where the next starts, in every zone", () => {
    for (const zone of [
      "UTC",
      "America/New_York",
      "Asia/Kolkata",
      "Pacific/Chatham",
      "Australia/Lord_Howe",
      "America/Asuncion",
    ]) {
      let period = periodOf(at("2023-01-15T00:00:00Z"), zone);
      for (let i = 0; i < 48; i++) {
        const next = nextPeriod(period, zone);
        expect(next.start).toBe(period.end);
        expect(previousPeriod(next, zone)).toEqual(period);
        expect(periodOf(period.end - 1, zone)).toEqual(period);
        expect(periodById(period.id, zone)).toEqual(period);
        period = next;
      }
    }
  });
});

describe("time zones", () => {
  it("accepts IANA zones in their canonical spelling and refuses others", () => {
    expect(timeZoneSchema.parse("utc")).toBe("UTC");
    expect(timeZoneSchema.parse("Asia/Kolkata")).toBe("Asia/Kolkata");
    expect(timeZoneSchema.parse("europe/paris")).toBe("Europe/Paris");
    expect(canonicalTimeZone("Pacific/Chatham")).toBe("Pacific/Chatham");
    expect(timeZoneSchema.safeParse("Mars/Olympus_Mons").success).toBe(false);
    expect(timeZoneSchema.safeParse("").success).toBe(false);
  });
});
