import { describe, expect, it } from "vitest";
import { pathHasPrefix, routePrefixSchema, scopeViolation } from "./scopes";

const admin = ["/admin"];

describe("scope matching", () => {
  it("matches path prefixes on whole segments", () => {
    expect(pathHasPrefix("/v1/users", "/v1/users")).toBe(true);
    expect(pathHasPrefix("/v1/users/42", "/v1/users")).toBe(true);
    expect(pathHasPrefix("/v1/usersX", "/v1/users")).toBe(false);
    expect(pathHasPrefix("/v1", "/v1/users")).toBe(false);
    expect(pathHasPrefix("/anything", "/")).toBe(true);
  });

  it("lets read-only keys read and nothing else", () => {
    const grant = { scope: "read-only" as const, routes: [] };
    for (const method of ["GET", "HEAD", "OPTIONS"]) {
      expect(scopeViolation(grant, { method, path: "/v1/things" }, admin)).toBeUndefined();
    }
    for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
      expect(scopeViolation(grant, { method, path: "/v1/things" }, admin)).toContain("read-only");
    }
    expect(scopeViolation(grant, { method: "GET", path: "/admin/users" }, admin)).toContain("admin");
  });

  it("lets read-write keys do everything but admin routes, and admin keys everything", () => {
    const readWrite = { scope: "read-write" as const, routes: [] };
    expect(scopeViolation(readWrite, { method: "DELETE", path: "/v1/things/1" }, admin)).toBeUndefined();
    expect(scopeViolation(readWrite, { method: "GET", path: "/admin" }, admin)).toContain("admin");
    expect(scopeViolation(readWrite, { method: "GET", path: "/administrator" }, admin)).toBeUndefined();
    expect(scopeViolation(readWrite, { method: "GET", path: "/ADMIN/keys" }, admin)).toContain("admin");
    const adminKey = { scope: "admin" as const, routes: [] };
    expect(scopeViolation(adminKey, { method: "DELETE", path: "/admin/keys/1" }, admin)).toBeUndefined();
  });

  it("restricts a key to its route prefixes, whatever its scope", () => {
    const grant = { scope: "admin" as const, routes: ["/v1/reports", "/v2/exports"] };
    expect(scopeViolation(grant, { method: "GET", path: "/v1/reports/7" }, admin)).toBeUndefined();
    expect(scopeViolation(grant, { method: "GET", path: "/v2/exports" }, admin)).toBeUndefined();
    expect(scopeViolation(grant, { method: "GET", path: "/v1/users" }, admin)).toContain("not allowed on this route");
  });

  it("validates route prefixes and drops a trailing slash", () => {
    expect(routePrefixSchema.parse("/v1/users/")).toBe("/v1/users");
    expect(routePrefixSchema.parse("/")).toBe("/");
    expect(routePrefixSchema.safeParse("v1/users").success).toBe(false);
    expect(routePrefixSchema.safeParse("/v1/../admin").success).toBe(false);
    expect(routePrefixSchema.safeParse("/v1?x=1").success).toBe(false);
  });

  it("stores route prefixes in the canonical form requests are checked in", () => {
    expect(routePrefixSchema.parse("/v1/%72eports")).toBe("/v1/reports");
    expect(routePrefixSchema.parse("//v1//reports/")).toBe("/v1/reports");
    for (const trick of [
      "/v1/reports;x",
      "/v1/%2561",
      "/v1/reports.",
      "/v1/reports%20",
      "/v1/%2e%2e/admin",
      "/a%2fb",
    ]) {
      expect(routePrefixSchema.safeParse(trick).success, trick).toBe(false);
    }
  });
});
