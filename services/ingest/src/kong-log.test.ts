import { defaultRouteTemplate } from "@keymeter/shared/usage";
import { describe, expect, it } from "vitest";
import { kongLogSchema, kongLogToEvent } from "./kong-log";

function kongEntry(uri: string) {
  return kongLogSchema.parse({
    request: { method: "get", uri, size: 10 },
    response: { status: 200, size: 20 },
    started_at: Date.parse("2026-11-29T10:00:00Z"),
    consumer: { custom_id: "key_abcdefgh12" },
  });
}

describe("Kong http-log routes", () => {
  it("are templated by the gateway's rule, so a path lands in one rollup row however it arrived", () => {
    const paths = [
      "/v1/blobs/0123456789abcdef", // 16 hex digits: an id for both
      "/v1/users/42/orders/3f0c9a2e-1b2c-4d5e-8f90-123456789abc",
      `/v1/${"z".repeat(400)}`, // capped at the schema's 256 characters
    ];
    for (const path of paths) {
      const event = kongLogToEvent(kongEntry(`${path}?page=2`), {}, "kong");
      expect(event.data.route).toBe(defaultRouteTemplate(path, "GET"));
    }
    expect(kongLogToEvent(kongEntry("/v1/blobs/0123456789abcdef"), {}, "kong").data.route).toBe("/v1/blobs/:id");
  });
});
