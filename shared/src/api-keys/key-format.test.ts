import { describe, expect, it } from "vitest";
import {
  containsSecret,
  findSecret,
  generateKeyId,
  generateSecret,
  hashesEqual,
  hashSecret,
  isKeyAlias,
  KEY_ID,
  keyChecksum,
  parseSecret,
  randomBase62,
  redactSecrets,
  secretHint,
} from "./key-format";

describe("API key format", () => {
  it("generates <prefix>_<env>_<30 random><6 checksum> secrets that parse", () => {
    const secret = generateSecret("km", "live");
    expect(secret).toMatch(/^km_live_[0-9A-Za-z]{36}$/);
    expect(parseSecret(secret)).toEqual({ prefix: "km", env: "live" });
    expect(parseSecret(generateSecret("acme", "test"))).toEqual({ prefix: "acme", env: "test" });
  });

  it("computes the checksum as base62 CRC32 of everything before it", () => {
    const body = "km_live_abcdefghijklmnopqrstuvwxyz0123";
    expect(keyChecksum(body)).toMatch(/^[0-9A-Za-z]{6}$/);
    expect(parseSecret(body + keyChecksum(body))).toBeDefined();
  });

  it("rejects a typo, a wrong checksum and foreign shapes", () => {
    const secret = generateSecret("km", "live");
    const last = secret.at(-1) === "a" ? "b" : "a";
    expect(parseSecret(secret.slice(0, -1) + last)).toBeUndefined();
    const middle = secret.charAt(12) === "x" ? "y" : "x";
    expect(parseSecret(secret.slice(0, 12) + middle + secret.slice(13))).toBeUndefined();
    for (const bad of [
      "",
      "km_live_",
      "km_prod_abc",
      `KM${secret.slice(2)}`,
      `${secret}x`,
      "Bearer x",
      "x".repeat(500),
    ]) {
      expect(parseSecret(bad)).toBeUndefined();
    }
    expect(() => generateSecret("K!", "live")).toThrow("prefix");
  });

  it("makes key ids the usage event schema accepts, unrelated to the secret", () => {
    const id = generateKeyId();
    expect(id).toMatch(KEY_ID);
    expect(id).not.toBe(generateKeyId());
  });

  it("draws base62 without obvious bias", () => {
    const counts = new Map<string, number>();
    for (const char of randomBase62(62_000)) counts.set(char, (counts.get(char) ?? 0) + 1);
    expect(counts.size).toBe(62);
    for (const count of counts.values()) expect(count).toBeGreaterThan(700);
  });

  it("hashes with SHA-256 and compares hashes in constant time", () => {
    const secret = generateSecret("km", "live");
    const hash = hashSecret(secret);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hashesEqual(hash, hashSecret(secret))).toBe(true);
    expect(hashesEqual(hash, hashSecret(`${secret}x`))).toBe(false);
    expect(hashesEqual(hash, "abc")).toBe(false);
  });

  it("hints at a secret with its last four characters only", () => {
    const secret = generateSecret("km", "test");
    expect(secretHint(secret)).toBe(`km_test_…${secret.slice(-4)}`);
  });
});

describe("secret scan", () => {
  it("finds a well-formed secret of any prefix anywhere in a string, and redacts it", () => {
    const live = generateSecret("km", "live");
    const test = generateSecret("acme", "test");
    expect(findSecret(`/v1/files/${live}/raw`)).toEqual({ start: 10, end: 10 + live.length });
    expect(containsSecret(`x${test}y`)).toBe(true);
    expect(redactSecrets(`a ${live} b ${test}`)).toBe("a [redacted] b [redacted]");
  });

  it("ignores look-alikes: wrong checksum, short tail, no prefix", () => {
    const live = generateSecret("km", "live");
    const last = live.at(-1) === "a" ? "b" : "a";
    expect(containsSecret(live.slice(0, -1) + last)).toBe(false);
    expect(containsSecret(live.slice(0, -2))).toBe(false);
    expect(containsSecret(live.slice(2))).toBe(false);
    expect(containsSecret("/v1/go_live_now")).toBe(false);
  });

  it("keeps aliases apart from key ids and secrets", () => {
    expect(isKeyAlias("3f0c9a2e-1b2c-4d5e-8f90-123456789abc")).toBe(true);
    expect(isKeyAlias("kong:acme")).toBe(true);
    expect(isKeyAlias("key_abcdefgh12")).toBe(false);
    expect(isKeyAlias("km_live_typo")).toBe(false);
    expect(isKeyAlias(`1${generateSecret("km", "live")}`)).toBe(false);
    expect(isKeyAlias("has space")).toBe(false);
  });
});
