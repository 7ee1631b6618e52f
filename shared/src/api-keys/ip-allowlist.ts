import { BlockList, isIPv4, isIPv6 } from "node:net";
import { z } from "zod";

/** An IPv4 or IPv6 address or CIDR block, normalized to `address/prefix`. */
export const cidrSchema = z
  .string()
  .max(64)
  .transform((value, context) => {
    const parsed = parseCidr(value);
    if (!parsed) {
      context.addIssue({ code: "custom", message: `"${value}" is not an IPv4/IPv6 address or CIDR block` });
      return z.NEVER;
    }
    return `${parsed.address}/${parsed.prefix}`;
  });

export interface Cidr {
  address: string;
  prefix: number;
  family: "ipv4" | "ipv6";
}

/** Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a /32 or /128). */
export function parseCidr(value: string): Cidr | undefined {
  const [address = "", prefixText, ...rest] = value.trim().split("/");
  if (rest.length > 0) return undefined;
  const family = isIPv4(address) ? "ipv4" : isIPv6(address) ? "ipv6" : undefined;
  if (!family) return undefined;
  const max = family === "ipv4" ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefix > max) return undefined;
  return { address, prefix, family };
}

/** Strips the IPv4-mapped IPv6 form (`::ffff:10.1.2.3`) that dual-stack sockets report. */
export function normalizeIp(address: string): string {
  const lower = address.toLowerCase();
  if (lower.startsWith("::ffff:") && isIPv4(lower.slice(7))) return lower.slice(7);
  return address;
}

/** An IP allowlist built once per key record; empty means any address. */
export class IpAllowlist {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(cidrs: readonly string[]) {
    this.empty = cidrs.length === 0;
    for (const value of cidrs) {
      const cidr = parseCidr(value);
      if (!cidr) throw new Error(`invalid CIDR in allowlist: ${value}`);
      this.list.addSubnet(cidr.address, cidr.prefix, cidr.family);
    }
  }

  allows(address: string | undefined): boolean {
    if (this.empty) return true;
    if (!address) return false;
    const ip = normalizeIp(address);
    const family = isIPv4(ip) ? "ipv4" : isIPv6(ip) ? "ipv6" : undefined;
    return family !== undefined && this.list.check(ip, family);
  }
}
