import { DedupWindow, FingerprintList } from "@keymeter/aggregator";
import { createRedis, type Redis } from "@keymeter/shared/stores";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { services, uniqueName } from "../support/services";

let redis: Redis;
beforeAll(() => {
  redis = createRedis(services().redisUrl);
});
afterAll(async () => {
  redis.disconnect();
});

/** A window on its own prefix, with a clock the test moves. */
function windows(windowSeconds = 600) {
  const keyPrefix = `${uniqueName("dedup")}:`;
  const clock = { now: Date.UTC(2026, 10, 29, 12) };
  const open = () => new DedupWindow(redis, { windowSeconds, keyPrefix, now: () => clock.now });
  return { open, clock };
}

async function markIds(window: DedupWindow, partition: number, ids: string[]): Promise<void> {
  const prints = new FingerprintList();
  for (const id of ids) prints.push(DedupWindow.member("gw", id));
  await window.load(partition);
  await window.mark(partition, prints);
}

describe("dedup window (held per partition, handed over through Redis)", () => {
  it("hands a partition's marks to the next owner, and to no other partition", async () => {
    const { open } = windows();
    const first = open();
    await markIds(first, 3, ["a", "b"]);
    expect(await first.has(3, "gw", "a")).toBe(true);

    const next = open();
    expect(await next.has(3, "gw", "a")).toBe(true);
    expect(await next.has(3, "gw", "b")).toBe(true);
    expect(await next.has(3, "gw", "c")).toBe(false);
    expect(await next.has(4, "gw", "a")).toBe(false);
    expect(await next.has(3, "other-gw", "a")).toBe(false);
  });

  it("reloads after a rebalance: marks another owner made meanwhile are seen", async () => {
    const { open } = windows();
    const mine = open();
    await markIds(mine, 0, ["a"]);
    const theirs = open();
    await markIds(theirs, 0, ["b"]);
    // Held since before "b": not seen until the window is forgotten (what a GROUP_JOIN does).
    expect(await mine.has(0, "gw", "b")).toBe(false);
    mine.forgetAll();
    expect(await mine.has(0, "gw", "b")).toBe(true);
    expect(await mine.has(0, "gw", "a")).toBe(true);
  });

  it("remembers ids for the window, in memory and in Redis, then forgets them", async () => {
    const { open, clock } = windows(60);
    const window = open();
    await markIds(window, 1, ["a"]);
    clock.now += 59_000;
    expect(await window.has(1, "gw", "a")).toBe(true);
    expect(await open().has(1, "gw", "a")).toBe(true);
    clock.now += 60_000;
    expect(await window.has(1, "gw", "a")).toBe(false);
    expect(await open().has(1, "gw", "a")).toBe(false);
  });
});
