import { parseConfig } from "@keymeter/shared/runtime";
import { describe, expect, it } from "vitest";
import { adminConfigSchema } from "./config";

describe("admin API config", () => {
  it("applies defaults and treats an empty bootstrap token as unset", () => {
    const config = parseConfig(adminConfigSchema, { ADMIN_BOOTSTRAP_TOKEN: "" });
    expect(config).toMatchObject({ ADMIN_PORT: 8081, KEY_SECRET_PREFIX: "km", KEY_ROTATION_GRACE_SECONDS: 86_400 });
    expect(config.ADMIN_BOOTSTRAP_TOKEN).toBeUndefined();
    expect(config.MIGRATE_ON_START).toBe(true);
  });

  it("refuses a short bootstrap token and a bad key prefix, naming them", () => {
    const attempt = () => parseConfig(adminConfigSchema, { ADMIN_BOOTSTRAP_TOKEN: "short", KEY_SECRET_PREFIX: "KM_" });
    expect(attempt).toThrow("ADMIN_BOOTSTRAP_TOKEN is invalid (must be at least 32 characters)");
    expect(attempt).toThrow("KEY_SECRET_PREFIX is invalid (expected 2..10 lower-case letters)");
  });
});
