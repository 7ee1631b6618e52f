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
    // Each billed tier has its own meter (month-to-date totals per tier) and a price to create.
    expect(tiers.get("pro")?.stripe).toEqual({
      meter_event_name: "keymeter_pro_requests",
      unit_amount_decimal: "0.1",
      currency: "usd",
    });
    expect(tiers.get("enterprise")?.stripe?.meter_event_name).toBe("keymeter_enterprise_requests");
  });

  it("takes a Stripe price to create (amount, currency, lookup key) or an existing price id, and one meter per tier", () => {
    const billed = (name: string, stripe: Record<string, string>) => ({
      name,
      rate_limit_rps: 5,
      monthly_quota: null,
      overage: "bill",
      stripe,
    });
    const tiers = parseTiers({
      tiers: [
        billed("team", { meter_event_name: "team_requests", price_id: "price_123" }),
        billed("scale", {
          meter_event_name: "scale_requests",
          unit_amount_decimal: "0.025",
          currency: "eur",
          price_lookup_key: "scale_v2",
        }),
      ],
    });
    expect(tiers.get("scale")?.stripe?.price_lookup_key).toBe("scale_v2");
    expect(() => parseTiers({ tiers: [billed("team", { meter_event_name: "m" })] })).toThrow(
      "tiers.0.stripe: a tier whose overage is billed needs stripe.meter_event_name and stripe.price_id or stripe.unit_amount_decimal",
    );
    expect(() =>
      parseTiers({ tiers: [billed("team", { meter_event_name: "m", unit_amount_decimal: "1,5" })] }),
    ).toThrow("tiers.0.stripe.unit_amount_decimal: expected a decimal amount");
    expect(() =>
      parseTiers({ tiers: [billed("team", { meter_event_name: "m", unit_amount_decimal: "1", currency: "USD" })] }),
    ).toThrow("tiers.0.stripe.currency: expected a lower-case ISO currency code");
    expect(() =>
      parseTiers({
        tiers: [
          billed("team", { meter_event_name: "shared", price_id: "price_1" }),
          billed("scale", { meter_event_name: "shared", price_id: "price_2" }),
        ],
      }),
    ).toThrow(
      "tiers.1.stripe.meter_event_name: meter shared is already used by tier team; each tier needs its own meter",
    );
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
