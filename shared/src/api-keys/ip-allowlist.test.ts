import { describe, expect, it } from "vitest";
import { cidrSchema, IpAllowlist, normalizeIp, parseCidr } from "./ip-allowlist";

describe("CIDR parsing", () => {
  it("parses IPv4 and IPv6 blocks and bare addresses", () => {
    expect(parseCidr("10.0.0.0/8")).toEqual({ address: "10.0.0.0", prefix: 8, family: "ipv4" });
    expect(parseCidr("2001:db8::/32")).toEqual({ address: "2001:db8::", prefix: 32, family: "ipv6" });
    expect(parseCidr("192.168.1.7")).toEqual({ address: "192.168.1.7", prefix: 32, family: "ipv4" });
    expect(parseCidr("::1")).toEqual({ address: "::1", prefix: 128, family: "ipv6" });
  });

  it("rejects nonsense", () => {
    for (const bad of ["", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/8/1", "10.0.0.0/-1", "host", "10.0.0.0/ 8"]) {
      expect(parseCidr(bad)).toBeUndefined();
    }
    const result = cidrSchema.safeParse("300.1.1.1/8");
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toContain("300.1.1.1/8");
    expect(cidrSchema.parse("10.1.2.3")).toBe("10.1.2.3/32");
  });
});

describe("IpAllowlist", () => {
  it("allows any address when empty", () => {
    expect(new IpAllowlist([]).allows("203.0.113.9")).toBe(true);
  });

  it("checks IPv4, IPv6 and IPv4-mapped IPv6 addresses", () => {
    const list = new IpAllowlist(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1/32"]);
    expect(list.allows("10.200.3.4")).toBe(true);
    expect(list.allows("11.0.0.1")).toBe(false);
    expect(list.allows("::ffff:10.1.1.1")).toBe(true);
    expect(list.allows("::ffff:11.1.1.1")).toBe(false);
    expect(list.allows("2001:db8:1::5")).toBe(true);
    expect(list.allows("2001:db9::5")).toBe(false);
    expect(list.allows("192.0.2.1")).toBe(true);
    expect(list.allows("192.0.2.2")).toBe(false);
    expect(list.allows(undefined)).toBe(false);
    expect(list.allows("not an ip")).toBe(false);
  });

  it("normalizes IPv4-mapped addresses only", () => {
    expect(normalizeIp("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(normalizeIp("::1")).toBe("::1");
  });
});
