import { AppError, parseConfig } from "@keymeter/shared/runtime";
import { describe, expect, it } from "vitest";
import { gatewayConfigSchema } from "./config";

describe("gateway config", () => {
  it("needs only the upstream and applies defaults", () => {
    const config = parseConfig(gatewayConfigSchema, { UPSTREAM_URL: "http://127.0.0.1:3000" });
    expect(config).toMatchObject({
      GATEWAY_PORT: 8080,
      KEY_CACHE_TTL_MS: 30_000,
      RATE_LIMIT_LEASE_MS: 100,
      API_KEY_QUERY_PARAM: false,
      ADMIN_ROUTE_PREFIXES: ["/admin"],
      TRUSTED_PROXIES: [],
    });
  });

  it("names each bad variable, including a URL that does not parse at all", () => {
    const attempt = () =>
      parseConfig(gatewayConfigSchema, { UPSTREAM_URL: "nope", API_KEY_QUERY_PARAM: "yes", GATEWAY_PORT: "x" });
    expect(attempt).toThrow(AppError);
    expect(attempt).toThrow("UPSTREAM_URL is invalid");
    expect(attempt).toThrow("API_KEY_QUERY_PARAM is invalid (expected true or false)");
    expect(attempt).toThrow("GATEWAY_PORT is invalid");
    expect(() => parseConfig(gatewayConfigSchema, {})).toThrow("UPSTREAM_URL is required");
    expect(() => parseConfig(gatewayConfigSchema, { UPSTREAM_URL: "ftp://api.example.com" })).toThrow(
      "expected a http or https URL",
    );
    expect(parseConfig(gatewayConfigSchema, { UPSTREAM_URL: "https://api.example.com" }).UPSTREAM_URL).toBe(
      "https://api.example.com",
    );
    const prefixes = { UPSTREAM_URL: "http://127.0.0.1:3000", ADMIN_ROUTE_PREFIXES: "/admin/, /%69nternal" };
    expect(parseConfig(gatewayConfigSchema, prefixes).ADMIN_ROUTE_PREFIXES).toEqual(["/admin", "/internal"]);
    expect(() =>
      parseConfig(gatewayConfigSchema, { UPSTREAM_URL: "http://127.0.0.1:3000", ADMIN_ROUTE_PREFIXES: "/admin;x" }),
    ).toThrow("ADMIN_ROUTE_PREFIXES");
  });

  it("parses lists and flags", () => {
    const config = parseConfig(gatewayConfigSchema, {
      UPSTREAM_URL: "http://u",
      ADMIN_ROUTE_PREFIXES: "/admin, /internal",
      TRUSTED_PROXIES: "10.0.0.0/8,::1",
      API_KEY_QUERY_PARAM: "true",
    });
    expect(config.ADMIN_ROUTE_PREFIXES).toEqual(["/admin", "/internal"]);
    expect(config.TRUSTED_PROXIES).toEqual(["10.0.0.0/8", "::1"]);
    expect(config.API_KEY_QUERY_PARAM).toBe(true);
  });
});
