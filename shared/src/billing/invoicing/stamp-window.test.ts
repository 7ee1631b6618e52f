import { describe, expect, it } from "vitest";
import { periodById } from "../periods";
import { stampWindow } from "./stamp-window";

describe("stampWindow", () => {
  it("is the period itself for a fixed offset", () => {
    for (const zone of ["UTC", "Asia/Kolkata", "America/Bogota"]) {
      const period = periodById("2027-07", zone);
      expect(stampWindow(period, zone)).toEqual(period);
    }
  });

  it("narrows a daylight-saving zone's month by the hour its Stripe period may drift, at both ends", () => {
    const july = periodById("2027-07", "Europe/Paris");
    expect(stampWindow(july, "Europe/Paris")).toEqual({
      id: "2027-07",
      start: Date.parse("2027-06-30T23:00:00Z"),
      end: Date.parse("2027-07-31T21:00:00Z"),
    });
    // Lord Howe moves by half an hour.
    const lordHowe = periodById("2027-01", "Australia/Lord_Howe");
    expect(stampWindow(lordHowe, "Australia/Lord_Howe").start - lordHowe.start).toBe(1_800_000);
  });
});
