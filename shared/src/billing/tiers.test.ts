import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { AppError } from "../runtime/errors";
import { loadTiers, parseTiers } from "./tiers";

describe("tiers", () => {
  it("ships free (10 RPS, 10,000 a month, block), pro and enterprise", () => {
    const tiers = loadTiers();
    expect(tiers.names()).toEqual(["free", "pro", "enterprise"]);
    expect(tiers.get("free")).toEqual({ name: "free", rate_limit_rps: 10, monthly_quota: 10_000, overage: "block" });
    expect(tiers.get("pro")?.overage).toBe("bill");
    expect(tiers.get("enterprise")?.monthly_quota).toBeNull();
  });

  it("loads a tiers file", () => {
    const dir = mkdtempSync(join(tmpdir(), "tiers-"));
    const path = join(dir, "tiers.json");
    writeFileSync(
      path,
      JSON.stringify({ tiers: [{ name: "team", rate_limit_rps: 50, monthly_quota: null, overage: "block" }] }),
    );
    expect(loadTiers(path).names()).toEqual(["team"]);
  });

  it("names the file and the field that is wrong", () => {
    const bad = {
      tiers: [
        { name: "free", rate_limit_rps: "10", monthly_quota: 10, overage: "block" },
        { name: "free", rate_limit_rps: 5, monthly_quota: 10, overage: "bill" },
        { name: "x", rate_limit_rps: 5, monthly_quota: 0, overage: "maybe" },
      ],
    };
    try {
      parseTiers(bad, "tiers.json");
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(AppError);
      const message = (error as AppError).message;
      expect(message).toMatch(/^invalid tiers in tiers\.json: /);
      expect(message).toContain("tiers.0.rate_limit_rps:");
      expect(message).toContain("tiers.2.monthly_quota:");
      expect(message).toContain("tiers.2.overage:");
    }
    expect(() =>
      parseTiers({ tiers: [{ name: "free", rate_limit_rps: 5, monthly_quota: 1, overage: "block", extra: 1 }] }),
    ).toThrow("Unrecognized key");
    const duplicate = { tiers: [bad.tiers[1], { ...bad.tiers[1], stripe: { meter_event_name: "m", price_id: "p" } }] };
    expect(() => parseTiers(duplicate)).toThrow("tiers.0.stripe: a tier whose overage is billed needs stripe");
  });

  it("explains an unreadable or non-JSON file", () => {
    const dir = mkdtempSync(join(tmpdir(), "tiers-"));
    expect(() => loadTiers(join(dir, "missing.json"))).toThrow("cannot read tiers file");
    const path = join(dir, "broken.json");
    writeFileSync(path, "{");
    expect(() => loadTiers(path)).toThrow("is not valid JSON");
  });
});
