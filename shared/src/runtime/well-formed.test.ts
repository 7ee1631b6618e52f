import { describe, expect, it } from "vitest";
import { malformedStringPath } from "./well-formed";

describe("malformedStringPath", () => {
  it("names the first string holding a lone surrogate, anywhere in the input", () => {
    expect(malformedStringPath({ name: "x \ud800" })).toBe("name");
    expect(malformedStringPath({ routes: ["/ok", "/bad\udc00"] })).toBe("routes.1");
    expect(malformedStringPath({ a: { b: "\udbff" } })).toBe("a.b");
    expect(malformedStringPath("\ud800")).toBe("(value)");
  });

  it("accepts well-formed text, astral characters included", () => {
    expect(malformedStringPath({ name: "café 😀 名前", n: 1, list: [null, true] })).toBeUndefined();
  });
});
