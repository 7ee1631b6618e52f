import { describe, expect, it } from "vitest";
import { createLogger } from "./logger";
import { RateLimitedLog } from "./rate-limited-log";

describe("RateLimitedLog", () => {
  it("logs the first occurrence, then once per interval with the count since the last line", () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger("test", "info", { write: (line: string) => void lines.push(JSON.parse(line)) });
    let now = 0;
    const log = new RateLimitedLog(logger, 10_000, () => now);
    for (let i = 0; i < 50; i++) {
      log.log("warn", "redis", { client: "redis" }, "redis connection error");
      now += 500; // 50 errors over 25 s
    }
    log.log("warn", "kafka", {}, "kafka connection error");
    expect(lines.map((l) => [l.msg, l.occurrences])).toEqual([
      ["redis connection error", 1],
      ["redis connection error", 20],
      ["redis connection error", 20],
      ["kafka connection error", 1],
    ]);
  });
});
