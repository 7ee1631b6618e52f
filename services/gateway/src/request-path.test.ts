import { describe, expect, it } from "vitest";
import { parseRequestTarget } from "./request-path";

const path = (raw: string) => parseRequestTarget(raw)?.path;

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
    expect(parseRequestTarget("/admin%2Fkeys")).toBeUndefined();
    expect(parseRequestTarget("/v1%5c..%5cadmin")).toBeUndefined();
    expect(parseRequestTarget("/v1/%00")).toBeUndefined();
  });

  it("accepts absolute-form targets and keeps the query", () => {
    const target = parseRequestTarget("http://api.example.com/v1/x?a=1&api_key=k");
    expect(target?.path).toBe("/v1/x");
    expect(target?.search).toBe("?a=1&api_key=k");
    expect(target?.searchParams.get("api_key")).toBe("k");
    expect(parseRequestTarget("ftp://x/y")).toBeUndefined();
    expect(parseRequestTarget("*")).toBeUndefined();
  });
});
