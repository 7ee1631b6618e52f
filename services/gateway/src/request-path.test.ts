import { canonicalPath } from "@keymeter/shared/api-keys";
import { describe, expect, it } from "vitest";
import { parseRequestTarget } from "./request-path";

const path = (raw: string) => {
  const parsed = parseRequestTarget(raw);
  return parsed.ok ? parsed.target.path : undefined;
};
const refusal = (raw: string) => {
  const parsed = parseRequestTarget(raw);
  return parsed.ok ? undefined : parsed.reason;
};

describe("parseRequestTarget", () => {
  it("resolves dot segments, plain and encoded", () => {
    expect(path("/v1/reports/../admin")).toBe("/v1/admin");
    expect(path("/v1/reports/%2e%2e/admin")).toBe("/v1/admin");
    expect(path("/v1/./x")).toBe("/v1/x");
    expect(path("/../../etc")).toBe("/etc");
  });

  it("keeps a leading // as a path and collapses slashes", () => {
    expect(path("//admin/keys")).toBe("/admin/keys");
    expect(path("/v1//reports///7")).toBe("/v1/reports/7");
  });

  it("decodes percent-encoded unreserved characters only", () => {
    expect(path("/%61dmin/keys")).toBe("/admin/keys");
    expect(path("/v1/a%20b")).toBe("/v1/a%20b");
    expect(path("/v1/caf%c3%a9")).toBe("/v1/caf%C3%A9");
  });

  it("refuses encoded slashes, backslashes and NUL", () => {
    expect(refusal("/admin%2Fkeys")).toContain("encoded slash");
    expect(refusal("/v1%5c..%5cadmin")).toContain("encoded slash");
    expect(refusal("/v1/%00")).toContain("NUL");
  });

  it("refuses matrix parameters, double encoding, control characters and trimmable segment ends", () => {
    expect(refusal("/admin;x")).toContain("matrix");
    expect(refusal("/v1/..;/admin")).toContain("matrix");
    expect(refusal("/v1/reports/..;/users")).toContain("matrix");
    expect(refusal("/%2561dmin")).toContain("%25");
    expect(refusal("/v1/%0d%0aX")).toContain("control");
    expect(refusal("/admin.")).toContain("dot or a space");
    expect(refusal("/admin%2e/keys")).toContain("dot or a space");
    expect(refusal("/admin%20")).toContain("dot or a space");
    expect(refusal("/admin%20/keys")).toContain("dot or a space");
    // Dots and spaces inside a segment are ordinary.
    expect(path("/v1/files/report.pdf")).toBe("/v1/files/report.pdf");
    expect(path("/v1/a%20b/c")).toBe("/v1/a%20b/c");
  });

  it("accepts absolute-form targets and keeps the query", () => {
    const parsed = parseRequestTarget("http://api.example.com/v1/x?a=1&api_key=k");
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.target.path).toBe("/v1/x");
    expect(parsed.target.search).toBe("?a=1&api_key=k");
    expect(parsed.target.searchParams.get("api_key")).toBe("k");
    expect(parseRequestTarget("ftp://x/y").ok).toBe(false);
    expect(parseRequestTarget("*").ok).toBe(false);
  });
});

/** The parse every target took before plain ones skipped the URL parser: the reference. */
function parsedByUrl(raw: string): { path: string; search: string } | { refused: string } {
  let url: URL;
  try {
    url = raw.startsWith("/") ? new URL(`http://gateway.invalid${raw}`) : new URL(raw);
  } catch {
    return { refused: "not a valid request target" };
  }
  const canonical = canonicalPath(url.pathname);
  return canonical.ok ? { path: canonical.path, search: url.search } : { refused: canonical.reason };
}

describe("parseRequestTarget without the URL parser", () => {
  it("agrees with the URL parser on every target, plain or not", () => {
    // Seeded, so a failure can be replayed.
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const alphabet = ["a", "Z", "0", "-", "_", "~", ".", "/", "//", "?", "&", "=", "%", "%2e", "%41", "%2F", ";"]
      .concat(["'", '"', " ", "#", "<", ">", "\\", "`", "{", "|", "^", "@", ":", "+", ",", "!", "$", "*", "(", "é"])
      .concat(["..", "./", "/..", "/.", "api_key", "\t", "[", "]"]);
    for (let i = 0; i < 20_000; i++) {
      let raw = "/";
      for (let n = random(12); n > 0; n--) raw += alphabet[random(alphabet.length)];
      const parsed = parseRequestTarget(raw);
      const reference = parsedByUrl(raw);
      const got = parsed.ok ? { path: parsed.target.path, search: parsed.target.search } : { refused: parsed.reason };
      expect(got, raw).toEqual(reference);
      if (parsed.ok) {
        expect([...parsed.target.searchParams], raw).toEqual([...new URLSearchParams(parsed.target.search)]);
        // A query that can name `api_key` is always parsed.
        if (!parsed.target.mayHoldApiKey) expect(parsed.target.searchParams.has("api_key"), raw).toBe(false);
      }
    }
  });

  it("keeps plain targets as sent, an empty query dropped", () => {
    expect(parseRequestTarget("/v1/items/42?expand=1&x=a%20b")).toEqual({
      ok: true,
      target: expect.objectContaining({ path: "/v1/items/42", search: "?expand=1&x=a%20b" }),
    });
    const bare = parseRequestTarget("/v1/items?");
    expect(bare.ok && bare.target.search).toBe("");
  });
});
