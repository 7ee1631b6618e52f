import { describe, expect, it } from "vitest";
import { z } from "zod";
import { env, parseConfig, storesConfigSchema } from "./config";
import { AppError } from "./errors";

describe("parseConfig", () => {
  it("applies the local defaults when nothing is set", () => {
    const config = parseConfig(storesConfigSchema, {});
    expect(config.KAFKA_BROKERS).toEqual(["127.0.0.1:9092"]);
    expect(config.CLICKHOUSE_DATABASE).toBe("keymeter");
  });

  it("splits a broker list", () => {
    expect(parseConfig(storesConfigSchema, { KAFKA_BROKERS: "a:1, b:2" }).KAFKA_BROKERS).toEqual(["a:1", "b:2"]);
  });

  it("names every malformed variable in one error", () => {
    const attempt = () =>
      parseConfig(storesConfigSchema, { KAFKA_BROKERS: "nohost", REDIS_URL: "http://x", LOG_LEVEL: "loud" });
    expect(attempt).toThrow(AppError);
    try {
      attempt();
    } catch (error) {
      const message = (error as AppError).message;
      expect(message).toMatch(/^invalid configuration: /);
      expect(message).toContain("KAFKA_BROKERS is invalid");
      expect(message).toContain("REDIS_URL is invalid (expected a redis or rediss URL)");
      expect(message).toContain("LOG_LEVEL is invalid");
      expect(message).not.toContain("\n");
    }
  });

  it("says a required variable is missing", () => {
    const schema = z.object({ INGEST_TOKEN: z.string().min(1), PORT: env.port() });
    expect(() => parseConfig(schema, { PORT: "8080" })).toThrow("INGEST_TOKEN is required");
    expect(() => parseConfig(schema, { INGEST_TOKEN: "x", PORT: "eighty" })).toThrow("PORT is invalid");
  });
});
