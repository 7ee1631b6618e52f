import { describe, expect, it } from "vitest";
import { MeterEventLimiter } from "./meter-event-limiter";

describe("MeterEventLimiter", () => {
  it("admits the burst at once, then one call per 1/rate seconds, in call order", async () => {
    let now = 0;
    const waits: number[] = [];
    const limiter = new MeterEventLimiter({
      eventsPerSecond: 100,
      burst: 2,
      now: () => now,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    for (let call = 0; call < 5; call += 1) await limiter.acquire();
    expect(waits.map((ms) => Math.round(ms))).toEqual([10, 20, 30]);
    now = 1_000; // the debt is repaid and the bucket refills up to the burst only
    waits.length = 0;
    for (let call = 0; call < 3; call += 1) await limiter.acquire();
    expect(waits.map((ms) => Math.round(ms))).toEqual([10]);
  });

  it("runs tasks of one key one at a time and tasks of other keys alongside", async () => {
    const limiter = new MeterEventLimiter();
    let running = 0;
    let most = 0;
    const log: string[] = [];
    const task = (key: string, label: string) =>
      limiter.exclusive(key, async () => {
        running += 1;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 5));
        log.push(label);
        running -= 1;
      });
    await Promise.all([task("a", "a1"), task("a", "a2"), task("a", "a3")]);
    expect(log).toEqual(["a1", "a2", "a3"]);
    expect(most).toBe(1);
    most = 0;
    await Promise.all([task("a", "a4"), task("b", "b1")]);
    expect(most).toBe(2);
  });
});
