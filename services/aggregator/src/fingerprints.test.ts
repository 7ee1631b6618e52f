import { describe, expect, it } from "vitest";
import { FINGERPRINT_WORDS, FingerprintList, FingerprintSet, fingerprint } from "./fingerprints";

const printOf = (text: string) => {
  const out = new Uint32Array(FINGERPRINT_WORDS);
  fingerprint(text, out, 0);
  return [...out];
};

describe("fingerprint", () => {
  it("is the same for the same text and differs where the text differs, separator and length included", () => {
    expect(printOf("gw-1\nevt-1")).toEqual(printOf(`gw-1\n${"evt-1"}`));
    const texts = [
      "",
      "a",
      "a\u0000",
      "gw\nevt-1",
      "gw\nevt-2",
      "gw-\nevt1",
      "gw\nevt-1 ",
      "é\nx",
      "\u00e9\nx ",
      "x".repeat(8),
    ];
    const prints = new Set(texts.map((text) => printOf(text).join(",")));
    expect(prints.size).toBe(texts.length);
  });

  it("puts a million distinct identities in a set with no collision, and finds each again", () => {
    const list = new FingerprintList(16);
    const set = new FingerprintSet(16);
    let added = 0;
    for (let i = 0; i < 1_000_000; i++) {
      if (set.add(list, list.push(`bench-gateway\nrun-${i}`))) added++;
    }
    expect(added).toBe(1_000_000);
    expect(set.size).toBe(1_000_000);
    const again = new FingerprintList(1);
    let found = 0;
    for (let i = 0; i < 1_000_000; i += 997) {
      again.count = 0;
      if (set.has(again, again.push(`bench-gateway\nrun-${i}`))) found++;
    }
    expect(found).toBe(Math.ceil(1_000_000 / 997));
    again.count = 0;
    expect(set.has(again, again.push("bench-gateway\nrun-1000000"))).toBe(false);
  }, 30_000);

  it("survives the round trip through bytes (Redis hand-over)", () => {
    const list = new FingerprintList(2);
    for (let i = 0; i < 100; i++) list.push(`s\n${i}`);
    const set = new FingerprintSet();
    set.addAll(Buffer.from(list.toBuffer()));
    expect(set.size).toBe(100);
    for (let i = 0; i < 100; i++) expect(set.has(list, i)).toBe(true);
  });
});
