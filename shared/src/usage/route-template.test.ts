import { describe, expect, it } from "vitest";
import { generateSecret } from "../api-keys/key-format";
import { defaultRouteTemplate } from "./route-template";

describe("defaultRouteTemplate", () => {
  it("replaces numeric, uuid and long hex segments with :id", () => {
    expect(defaultRouteTemplate("/v1/users/42", "GET")).toBe("/v1/users/:id");
    expect(defaultRouteTemplate("/v1/orders/3f0c9a2e-1b2c-4d5e-8f90-123456789abc/items/7", "GET")).toBe(
      "/v1/orders/:id/items/:id",
    );
    expect(defaultRouteTemplate("/v1/blobs/0123456789abcdef0123", "GET")).toBe("/v1/blobs/:id");
  });

  it("keeps named segments and the root", () => {
    expect(defaultRouteTemplate("/v1/users/me", "GET")).toBe("/v1/users/me");
    expect(defaultRouteTemplate("/", "GET")).toBe("/");
  });

  it("stays within the event schema's 256 characters", () => {
    expect(defaultRouteTemplate(`/${"z".repeat(400)}`, "GET")).toHaveLength(256);
  });

  it("redacts a segment holding a key secret, also percent-encoded", () => {
    const secret = generateSecret("km", "live");
    expect(defaultRouteTemplate(`/v1/files/${secret}`, "GET")).toBe("/v1/files/:redacted");
    expect(defaultRouteTemplate(`/v1/files/${secret}.json/meta`, "GET")).toBe("/v1/files/:redacted/meta");
    expect(defaultRouteTemplate(`/v1/${secret.replaceAll("_", "%5F")}`, "GET")).toBe("/v1/:redacted");
    expect(defaultRouteTemplate("/v1/go_live_now", "GET")).toBe("/v1/go_live_now");
  });
});
