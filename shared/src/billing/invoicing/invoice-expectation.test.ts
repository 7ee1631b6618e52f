import { describe, expect, it } from "vitest";
import { loadTiers } from "../tiers";
import { expectedLine, multiplyDecimal } from "./invoice-expectation";

describe("expectedLine", () => {
  const tiers = loadTiers();
  it("bills the units above the quota at the tier's decimal price, rounded half up", () => {
    const pro = tiers.get("pro");
    if (!pro) throw new Error("no pro tier");
    expect(expectedLine(pro, 999_999)).toMatchObject({ included_units: 1_000_000, overage_units: 0, amount: 0 });
    expect(expectedLine(pro, 1_000_005)).toMatchObject({ overage_units: 5, amount: 1 }); // 0.5 -> 1
    expect(expectedLine(pro, 1_000_004)).toMatchObject({ overage_units: 4, amount: 0 }); // 0.4 -> 0
  });

  it("bills every unit of an unlimited tier and stays exact where floating point is not", () => {
    const enterprise = tiers.get("enterprise");
    if (!enterprise) throw new Error("no enterprise tier");
    expect(expectedLine(enterprise, 30)).toMatchObject({ included_units: 0, overage_units: 30, amount: 2 }); // 1.5 -> 2
    expect(multiplyDecimal(3, "0.35")).toBe(1); // 1.05 (floating point: 1.0499999999999998)
    expect(multiplyDecimal(9_007_199, "123456.123456789012")).toBe(1_111_993_871_744);
  });
});
