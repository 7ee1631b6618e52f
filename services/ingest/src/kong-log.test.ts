import { defaultRouteTemplate } from "@keymeter/shared/usage";
import { describe, expect, it } from "vitest";
import { kongLogSchema, kongLogToEvent, servedUpstream } from "./kong-log";

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

describe("Kong http-log units", () => {
  const entry = (extra: Record<string, unknown>) =>
    kongLogSchema.parse({
      request: { method: "GET", uri: "/v1/x" },
      response: { status: 429 },
      started_at: Date.parse("2026-11-29T10:00:00Z"),
      consumer: { id: "3f0c9a2e-1b2c-4d5e-8f90-123456789abc" },
      ...extra,
    });

  it("are 0 when Kong answered itself (proxy latency -1, or no upstream try)", () => {
    const refused = entry({ latencies: { request: 1, kong: 1, proxy: -1 } });
    expect(servedUpstream(refused)).toBe(false);
    expect(kongLogToEvent(refused, {}, "kong").data).toMatchObject({ status: 429, units: 0 });
    expect(servedUpstream(entry({ latencies: { request: 1 }, tries: [] }))).toBe(false);
  });

  it("are 1 when an upstream served the request; the consumer id is the subject without a custom_id", () => {
    const served = entry({ latencies: { request: 9, proxy: 7 }, tries: [{ ip: "10.0.0.1", port: 80 }] });
    expect(kongLogToEvent(served, {}, "kong")).toMatchObject({
      subject: "3f0c9a2e-1b2c-4d5e-8f90-123456789abc",
      data: { units: 1 },
    });
  });
});
